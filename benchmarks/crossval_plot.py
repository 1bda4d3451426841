"""The cross-validation summary as a picture: each variant's balanced accuracy per fold, and
the share of serious held-out images each fold's referral threshold referred."""

import numpy as np


def figure(payload: dict):
  """Each variant's balanced accuracy per fold (dots) with its mean and 95% interval (line and
  band); beside it, with a referral threshold, the share of serious held-out images each
  fold's threshold referred (as the fold fit it, with the per-draw margin, and cross-fit)
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
    own = [100 * p["referral_own"]["sensitivity"] for p in payload["per_fold"]]
    cross = {row["fold"]: 100 * row["sensitivity"] for row in r["cross_fit"]}
    ax.plot(folds, own, "o",
            label=f"fit by the fold's build: {100 * r['own_sensitivity']['mean']:.1f}%")
    ax.plot([f for f in folds if f in cross], [cross[f] for f in folds if f in cross], "s",
            label=f"fit on the other folds: {100 * r['sensitivity']['mean']:.1f}%")
    if "per_draw" in r:
      d = r["per_draw"]
      m = {row["fold"]: 100 * row["sensitivity"] for row in d["folds"]}
      ax.plot([f for f in folds if f in m], [m[f] for f in folds if f in m], "^",
              label=f"fit by the fold's build, per-draw margin {d['confidence']:g}: "
                    f"{100 * d['sensitivity']['mean']:.1f}%")
    ax.axhline(100 * r["target_sensitivity"], color="0.3", ls="--", lw=1, label="target")
    ax.set(title="serious held-out images referred", xlabel="fold", ylabel="%", xticks=folds)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def plot(payload: dict, path: str) -> None:
  """`figure(payload)` saved to PATH (write-then-rename)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from pipeline import atomic  # pylint: disable=g-import-not-at-top
  fig = figure(payload)
  atomic.save_figure(fig, path)
  plt.close(fig)
