"""The cross-validation summary as a picture: each variant's balanced accuracy per fold, and
the share of serious held-out images each fold's referral threshold referred."""

import numpy as np


def figure(payload: dict):
  """Each variant's balanced accuracy per fold (dots) with its mean and 95% interval (line and
  band); beside it, with a referral threshold, the share of serious held-out images each
  fold's threshold referred (as the fold fit it, cross-fit, and with the per-draw margin)
  against the target."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  r = payload.get("referral")
  fig, axes = plt.subplots(1, 2 if r else 1, figsize=(11 if r else 6, 4), squeeze=False)
  ax = axes[0][0]
  folds = [p["fold"] for p in payload["per_fold"]]
  for j, (v, s) in enumerate(payload["variants"].items()):
    s = s["balanced_accuracy"]
    x = np.asarray(folds, float) + 0.12 * (j - 1)
    dots = ax.plot(x, [100 * p["balanced_accuracy"][v] for p in payload["per_fold"]], "o",
                   label=f"{v}: {100 * s['mean']:.1f}%")
    ax.axhline(100 * s["mean"], color=dots[0].get_color(), lw=1)
    if s["ci95"]:
      ax.axhspan(100 * s["ci95"][0], 100 * s["ci95"][1], color=dots[0].get_color(), alpha=0.08)
  ax.set(title=f"balanced accuracy on held-out lesions ({len(folds)} of {payload['folds']} "
         "folds; mean, 95% CI)", xlabel="fold", ylabel="%", xticks=folds)
  ax.legend(fontsize=8)
  if r:
    ax = axes[0][1]
    own = [{"fold": p["fold"], **p["referral_own"]} for p in payload["per_fold"]]
    d = r["per_draw"]
    for rows, mean, marker, label in (
        (own, r["own_sensitivity"], "o", "fit by the fold's build"),
        (r["cross_fit"], r["sensitivity"], "s", "fit on the other folds"),
        (d["folds"], d["sensitivity"], "^",
         f"fit by the fold's build, per-draw margin {d['confidence']:g}")):
      ax.plot([row["fold"] for row in rows], [100 * row["sensitivity"] for row in rows], marker,
              label=f"{label}: {100 * mean['mean']:.1f}%")
    ax.axhline(100 * r["target_sensitivity"], color="0.3", ls="--", lw=1, label="target")
    ax.set(title="serious held-out images referred", xlabel="fold", ylabel="%", xticks=folds)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def plot(payload: dict, path: str) -> None:
  """`figure(payload)` saved to PATH (write-then-rename)."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  common.save_plot(figure(payload), path)
