"""Few-shot variance split by source: how much of the variance of the 0/1 correctness comes from the
items, from which exemplars were drawn, from their order, from sampling, and from the rest.

A *family* is the strategies of one task and model that differ only in `seed`, `order_seed` and
`sampling_seed` (a grid such as `few_shot:k=3,seed={0,1,2},order=shuffled,order_seed={0,1}`). Each
strategy of a family is a *setting* with three levels, each None when it cannot change the output:

    draw      the exemplar seed, when exemplars are drawn at random (k > 0 and selection is not `first`)
    order     `order_seed`, when `order=shuffled` and there are 2 or more exemplars
    sampling  the decoding seed (the row's `decoding.seed`), when temperature > 0

Model (random effects, balanced): items are crossed with a nested hierarchy draw > order(draw) >
sampling(order), over the items every setting answered without an error:

    y[i, d, o, s] = mu + item_i + draw_d + order_do + sampling_dos + (item x setting interactions) + e

A source that is not varied (one level under every parent) drops out of the hierarchy and is
reported as "not varied"; its variance, if any, is inside the level above it. The components are the
ANOVA (expected mean squares) estimates, truncated at 0 for reporting; for a balanced design they
equal the REML estimates when none is truncated (checked against statsmodels' MixedLM in
tests/test_variance.py). `residual` = all item x setting interactions plus the Bernoulli noise (one
observation per item and setting cannot separate them). Shares are of the sum of the components.
CIs: percentile bootstrap over items (1000 resamples, seed 0); they carry the items' sampling
uncertainty only, not that of having few draws / orders / seeds (the `levels` column says how many).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

FACTORS = ("draw", "order", "sampling")
SEED_KEYS = ("seed", "order_seed", "sampling_seed")
COLUMNS = ["task", "model", "family", "component", "levels", "variance", "ci_low", "ci_high", "share",
           "share_ci_low", "share_ci_high", "sd", "n_items", "n_settings", "accuracy"]
N_BOOT = 1000


# -- which setting a strategy is --------------------------------------------------------------
def family_name(spec: str) -> str:
    """The spec without its seed keys: 'few_shot:k=3,seed=1,order=shuffled' -> 'few_shot:k=3,order=shuffled'."""
    name, _, rest = spec.partition(":")
    keep = [x for x in rest.split(",") if x.strip() and x.split("=", 1)[0].strip() not in SEED_KEYS]
    return f"{name}:{','.join(keep)}" if keep else name


def setting_levels(spec: str, decoding: Any) -> tuple[Any, Any, Any] | None:
    """(draw, order, sampling) levels of one strategy (None where the source cannot change the output),
    or None when the spec does not parse (a run from another version)."""
    from ..errors import ConfigError
    from ..strategy.strategies import FewShot, SelfConsistency, parse_strategy, selection

    try:
        strat = parse_strategy(spec)
    except ConfigError:
        return None
    p = strat.params
    if isinstance(strat, SelfConsistency):
        k = int(p.get("shots", 0))
    elif isinstance(strat, FewShot):
        k = strat.k
    else:
        k = 0
    draw = p.get("seed") if k > 0 and selection(p) != "first" and "seed" in p else None
    order = p.get("order_seed", 0) if k > 1 and p.get("order") == "shuffled" else None
    try:
        dec = json.loads(decoding) if isinstance(decoding, str) else dict(decoding or {})
    except (json.JSONDecodeError, TypeError, ValueError):
        dec = {}
    sampling = dec.get("seed") if float(dec.get("temperature") or 0) > 0 else None
    return draw, order, sampling


# -- the estimator ----------------------------------------------------------------------------
def anova_components(y: np.ndarray) -> dict[str, Any]:
    """Variance components of a balanced design: y has shape (items, n_1, ..., n_K), axis 1..K a
    nested hierarchy (each level nested in the one before), every level crossed with the items.

    Returns {"item": s2, "factors": [s2_1..s2_K], "interactions": [s2 of item x factor_j], } with the
    raw (possibly negative) ANOVA estimates: with MS the mean squares, m_j = n_{j+1}...n_K and C the
    number of settings,
        s2(item x F_j) = (MS(AF_j) - MS(AF_{j+1})) / m_j                  (MS(AF_{K+1}) = 0)
        s2(F_j)        = ((MS(F_j) - MS(AF_j)) - (MS(F_{j+1}) - MS(AF_{j+1}))) / (I m_j)
        s2(item)       = (MS(A) - MS(AF_1)) / C
    """
    y = np.asarray(y, dtype=float)
    n_items, ns = y.shape[0], y.shape[1:]
    k = len(ns)
    if n_items < 2 or k == 0 or min(ns) < 2:
        raise ValueError("need at least 2 items and 2 levels of every factor")
    c = int(np.prod(ns))
    # M[j]: mean over items and the levels below j, shape ns[:j]; IM[j]: the same per item
    m = [np.asarray(y.mean(axis=(0,) + tuple(range(j + 1, k + 1)))) for j in range(k + 1)]
    im = [y.mean(axis=tuple(range(j + 1, k + 1))) if j < k else y for j in range(k + 1)]
    ms_f, ms_af = [], []
    for j in range(1, k + 1):
        mj = int(np.prod(ns[j:])) if j < k else 1
        parents = int(np.prod(ns[: j - 1])) if j > 1 else 1
        df_f = parents * (ns[j - 1] - 1)
        ss_f = n_items * mj * float(((m[j] - m[j - 1][..., None]) ** 2).sum())
        inter = im[j] - im[j - 1][..., None] - m[j][None] + m[j - 1][None][..., None]
        ss_af = mj * float((inter ** 2).sum())
        ms_f.append(ss_f / df_f)
        ms_af.append(ss_af / ((n_items - 1) * df_f))
    ms_a = c * float(((im[0] - m[0]) ** 2).sum()) / (n_items - 1)
    ms_f.append(0.0)
    ms_af.append(0.0)
    inter_s2, fac_s2 = [], []
    for j in range(1, k + 1):
        mj = int(np.prod(ns[j:])) if j < k else 1
        inter_s2.append((ms_af[j - 1] - ms_af[j]) / mj)
        fac_s2.append(((ms_f[j - 1] - ms_af[j - 1]) - (ms_f[j] - ms_af[j])) / (n_items * mj))
    return {"item": (ms_a - ms_af[0]) / c, "factors": fac_s2, "interactions": inter_s2}


def _shares(est: dict[str, Any]) -> dict[str, float]:
    """Components truncated at 0, the interactions summed into `residual`."""
    out = {"item": max(0.0, est["item"])}
    out.update({f"f{j}": max(0.0, v) for j, v in enumerate(est["factors"])})
    out["residual"] = max(0.0, float(sum(est["interactions"])))
    return out


def decompose(y: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, dict[str, float]]:
    """Truncated components, shares and percentile bootstrap CIs (items resampled) of a balanced array."""
    point = _shares(anova_components(y))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        yb = y[rng.integers(0, y.shape[0], size=y.shape[0])]
        try:
            boots.append(_shares(anova_components(yb)))
        except ValueError:
            continue
    total = sum(point.values())
    out = {}
    for name, v in point.items():
        vals = np.array([b[name] for b in boots])
        shares = np.array([b[name] / s for b in boots if (s := sum(b.values())) > 0])  # all 0: no share
        out[name] = {"variance": v, "share": v / total if total > 0 else np.nan,
                     "ci_low": float(np.quantile(vals, 0.025)) if len(vals) else np.nan,
                     "ci_high": float(np.quantile(vals, 0.975)) if len(vals) else np.nan,
                     "share_ci_low": float(np.quantile(shares, 0.025)) if len(shares) else np.nan,
                     "share_ci_high": float(np.quantile(shares, 0.975)) if len(shares) else np.nan}
    return out


# -- from the predictions table ---------------------------------------------------------------
def _balanced_array(cells: dict[tuple, pd.Series]) -> tuple[np.ndarray, list[str], list[int]] | None:
    """The settings as an (items, n_1, ..., n_K) array over the varied factors, or None if unbalanced."""
    keys = list(cells)
    varied = [f for f in range(3) if len({k[: f + 1] for k in keys}) > len({k[:f] for k in keys})]
    if not varied:
        return None
    # the children of each node of the varied hierarchy, sorted, must be equally many
    sizes, index = [], {}
    for depth, f in enumerate(varied):
        groups: dict[tuple, set] = {}
        for key in keys:
            parent = tuple(key[g] for g in varied[:depth])
            groups.setdefault(parent, set()).add(key[f])
        counts = {len(v) for v in groups.values()}
        if len(counts) != 1:
            return None
        sizes.append(counts.pop())
        for parent, vals in groups.items():
            for i, v in enumerate(sorted(vals, key=str)):
                index[(depth, parent, v)] = i
    if int(np.prod(sizes)) != len(keys):
        return None
    items = sorted(set.intersection(*(set(s.index) for s in cells.values())), key=str)
    if len(items) < 2:
        return None
    y = np.zeros([len(items)] + sizes)
    for key, series in cells.items():
        pos = tuple(index[(d, tuple(key[g] for g in varied[:d]), key[f])] for d, f in enumerate(varied))
        y[(slice(None),) + pos] = series.loc[items].to_numpy(dtype=float)
    return y, [FACTORS[f] for f in varied], sizes


def variance_table(preds: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One block of rows per task x model x family with at least one varied source (see the module doc)."""
    if preds.empty or "decoding" not in preds:
        return pd.DataFrame(columns=COLUMNS)
    err = preds["error"].notna() & (preds["error"].astype(str) != "")
    ok = preds[~err].assign(correct=lambda d: d["correct"].fillna(False).astype(bool))
    rows = []
    for (task, model), g in ok.groupby(["task", "model"], sort=True):
        fams: dict[str, dict[tuple, pd.Series]] = {}
        for spec, s in g.groupby("strategy", sort=True):
            levels = setting_levels(str(spec), s["decoding"].iloc[0])
            if levels is None:
                continue
            cells = fams.setdefault(family_name(str(spec)), {})
            cells.setdefault(levels, s.drop_duplicates("example_id").set_index("example_id")["correct"])
        for fam, cells in sorted(fams.items()):
            built = _balanced_array(cells) if len(cells) > 1 else None
            if built is None:
                continue
            y, varied, sizes = built
            res = decompose(y, n_boot=n_boot, seed=seed)
            base = {"task": task, "model": model, "family": fam, "n_items": y.shape[0],
                    "n_settings": int(np.prod(sizes)), "accuracy": float(y.mean())}
            named = {"item": (res["item"], y.shape[0])}
            named.update({f: (res[f"f{j}"], sizes[j]) for j, f in enumerate(varied)})
            for comp in ("item",) + FACTORS + ("residual",):
                if comp == "residual":
                    r, lv = res["residual"], None
                elif comp in named:
                    r, lv = named[comp]
                else:  # not varied
                    rows.append({**base, "component": comp, "levels": 1})
                    continue
                rows.append({**base, "component": comp, "levels": lv, **r, "sd": float(np.sqrt(r["variance"]))})
    return pd.DataFrame(rows, columns=COLUMNS)


def _pct(x: float, unit: str = " %") -> str:
    return "–" if pd.isna(x) else f"{100 * x:.1f}{unit}"


def format_variance(table: pd.DataFrame) -> str:
    """The split as printed after the run summary."""
    out = []
    for (task, model, fam), g in table.groupby(["task", "model", "family"], sort=False):
        first = g.iloc[0]
        out.append(f"variance of correctness by source: {task} · {fam} ({int(first['n_items'])} items x "
                   f"{int(first['n_settings'])} settings, accuracy {first['accuracy']:.3f})")
        lines = []
        for r in g.to_dict("records"):
            if pd.isna(r["variance"]):
                lines.append([r["component"], "1", "not varied", "", "", ""])
                continue
            lv = "" if pd.isna(r["levels"]) else str(int(r["levels"]))
            lines.append([r["component"], lv, f"{r['variance']:.4f}", _pct(r["share"]),
                          f"[{_pct(r['share_ci_low'], '')}, {_pct(r['share_ci_high'])}]", f"{r['sd']:.3f}"])
        df = pd.DataFrame(lines, columns=["source", "levels", "variance", "share", "share 95% CI", "sd"])
        out.append(df.to_string(index=False))
    return "\n".join(out)



NOTE = ("Strategies that differ only in their exemplar draw (seed), order (order_seed) or sampling seed form a "
        "family. Components of the variance of the 0/1 correctness: ANOVA estimates of a random-effects model "
        "(items crossed with draw > order > sampling), truncated at 0; residual = item × setting interactions and "
        "noise; 95 % CIs by bootstrap over items (1000 resamples), which do not include the uncertainty of having "
        "few draws, orders or seeds (see levels). sd = √variance. See docs/strategies.md.")
HEAD = ["task", "model", "family", "items × settings (accuracy)", "source", "levels", "variance (95 % CI)",
        "share (95 % CI)", "sd"]


def variance_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The report's table (harness.reports.report's built-in 'Variance by source' section): header and text rows."""
    rows = []
    for r in table.to_dict("records"):
        fam = [str(r["task"]), str(r["model"]), str(r["family"]),
               f"{int(r['n_items'])} × {int(r['n_settings'])} ({_pct(r['accuracy'])})"]
        if pd.isna(r["variance"]):
            rows.append(fam + [r["component"], "1", "not varied", "–", "–"])
            continue
        lv = "–" if pd.isna(r["levels"]) else str(int(r["levels"]))
        rows.append(fam + [r["component"], lv, f"{r['variance']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
                           f"{_pct(r['share'])} [{_pct(r['share_ci_low'], '')}, {_pct(r['share_ci_high'], '')}]",
                           f"{r['sd']:.3f}"])
    return HEAD, rows
