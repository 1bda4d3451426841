"""pipeline.serve's pages: Try (upload photos, see the top 5 and the referral flag) and Review
(the test split as QA sees it: confusion matrix, per-class figures, the images int8 and
float32 disagree on, the misclassified ones).

- `review.py`: the figures and galleries, computed once from a build directory;
- `app.py`: the Flask application (routes, upload limits, error pages);
- `templates/`: the HTML.
"""
