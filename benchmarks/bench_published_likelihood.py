"""A published likelihood, end to end: diffana against pyhf on the ATLAS eRJR
three-lepton likelihood (HEPData; 4 one-bin channels, ~480 modifiers, 67
parameters with a signal patch, 60 signal patches) in ../shared/data/atlas_erjr/.

Every timing is the wall time of a fresh process, as a user meets it, import and
model building included:

1. one workspace (background + one signal patch), ``cls`` at POI = 1:
   ``diffana cls`` with an empty compilation cache (cold) and again (warm), against
   ``pyhf cls`` (pyhf's command line) on the same workspace with the ill-conditioned
   MC-statistics γ of diboson3LISR in CRISR fixed in its measurement (``"fixed":
   true``), where pyhf's fit converges — the peer of the targets — and, for the
   record, ``pyhf cls`` on the original workspace, where SLSQP stops at its start
   and returns a wrong CLs (see docs/published_likelihoods.md);
2. the same workspace, 95% CL upper limits: ``diffana limit --cl 0.95`` cold and
   warm, against pyhf's ``upper_limit`` (TOMS748 on asymptotic CLs, in the POI's
   bounds) with a fit that converges, i.e. with the ill-conditioned
   MC-statistics γ of diboson3LISR in CRISR fixed (see docs/published_likelihoods.md);
3. whole patchsets: ``diffana cls BKG --patchset P1 … PN`` for N = 1, 10, 60
   (cold and warm), against a loop of pyhf's hypotest over the same patches in one
   Python process (pyhf imported once, which favours pyhf over a loop of
   ``pyhf cls`` commands), with that γ fixed (converging, the peer of the target)
   and as shipped (SLSQP, wrong CLs on most patches).

Prints the times, the ratios and the agreement of diffana's numbers with converged
pyhf (tests/data/atlas_erjr_pyhf_reference.json, computed with that γ fixed, by
scripts/make_atlas_pyhf_reference.py). Compile time is stated separately: it is the
difference between the cold and the warm run of the same command.

    python benchmarks/bench_published_likelihood.py            # all of it (~15-25 min on 2 cores)
    python benchmarks/bench_published_likelihood.py --quick    # 1 and 10 patches only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "atlas_erjr"
REFERENCE = ROOT / "tests" / "data" / "atlas_erjr_pyhf_reference.json"
DEFAULT_PATCH = "C1N2_WZ_200p0_100p0"

PYHF_LIMIT = r"""
import json, sys, time, jsonpatch, numpy as np, pyhf
from pyhf.infer.intervals.upper_limits import toms748_scan
bkg = json.load(open(sys.argv[1])); patch = json.load(open(sys.argv[2]))
ws = pyhf.Workspace(jsonpatch.apply_patch(bkg, patch)); model = ws.model(); data = ws.data(model)
{STIFFEST}
fixed = stiffest_gamma_fixed(ws, model)
low, high = model.config.suggested_bounds()[model.config.poi_index]
obs, exp = toms748_scan(data, model, low + 1e-4, high, level=0.05, rtol=1e-6, fixed_params=fixed)
print(json.dumps({"obs": float(obs), "exp": [float(v) for v in exp]}))
"""

PYHF_LOOP = r"""
import json, sys, time, jsonpatch, pyhf
{STIFFEST}
converging = sys.argv[1] == "converging"
bkg = json.load(open(sys.argv[2]))
out = {}
for path in sys.argv[3:]:
    ws = pyhf.Workspace(jsonpatch.apply_patch(bkg, json.load(open(path))))
    model = ws.model(); data = ws.data(model)
    fixed = stiffest_gamma_fixed(ws, model) if converging else None
    obs, exp = pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde", return_expected_set=True,
                                   fixed_params=fixed)
    out[path] = {"CLs_obs": float(obs), "CLs_exp": [float(v) for v in exp]}
print(json.dumps(out))
"""

# The shapesys parameter with the largest tau = (nominal / uncertainty)^2 (the eRJR
# gamma of diboson3LISR in CRISR, tau = 1.9e11): pyhf's fit converges with it fixed.
STIFFEST = r"""
def stiffest_gamma(ws):
    best = None
    for channel in ws["channels"]:
        for sample in channel["samples"]:
            for m in sample["modifiers"]:
                if m["type"] == "shapesys":
                    for i, (n, s) in enumerate(zip(sample["data"], m["data"])):
                        if s > 0 and n > 0 and (best is None or (n / s) ** 2 > best[0]):
                            best = ((n / s) ** 2, m["name"], i)
    return best[1], best[2]

def stiffest_gamma_fixed(ws, model):
    name, bin_index = stiffest_gamma(ws)
    fixed = model.config.suggested_fixed()
    fixed[model.config.par_slice(name).start + bin_index] = True
    return fixed
"""
PYHF_LIMIT = PYHF_LIMIT.replace("{STIFFEST}", STIFFEST)
PYHF_LOOP = PYHF_LOOP.replace("{STIFFEST}", STIFFEST)


def run(command: list[str], env_extra: dict | None = None) -> tuple[float, str]:
    """Wall time (s) and standard output of a fresh process."""
    env = dict(os.environ, **(env_extra or {}))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}… failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def patch_path(name: str) -> Path:
    return DATA / f"patch_{name}.json"


def patched_workspace(name: str, folder: Path) -> Path:
    import jsonpatch

    bkg = json.loads((DATA / "bkg_only.json").read_text())
    path = folder / f"ws_{name}.json"
    path.write_text(json.dumps(jsonpatch.apply_patch(bkg, json.loads(patch_path(name).read_text()))))
    return path


def gamma_fixed_workspace(workspace: Path) -> Path:
    """A copy of ``workspace`` whose measurement fixes the stiffest shapesys γ (a
    one-bin channel here, so fixing the modifier fixes exactly that γ): the
    workspace on which ``pyhf cls`` converges."""
    namespace: dict = {}
    exec(STIFFEST, namespace)
    document = json.loads(workspace.read_text())
    name, _ = namespace["stiffest_gamma"](document)
    for measurement in document["measurements"]:
        measurement["config"].setdefault("parameters", []).append({"name": name, "fixed": True})
    path = workspace.with_name(workspace.stem + "_gamma_fixed.json")
    path.write_text(json.dumps(document))
    return path


def cold_and_warm(command: list[str], cache: Path) -> tuple[float, float, str]:
    """Wall times with an empty cache and again with the cache it filled."""
    cache_env = {"DIFFANA_JAX_CACHE": str(cache)}
    cold, _ = run(command, cache_env)
    warm, out = run(command, cache_env)
    return cold, warm, out


def ratio_line(label: str, diffana_s: float, peer_s: float) -> str:
    return f"  {label:<44s} diffana {diffana_s:7.1f} s   pyhf {peer_s:7.1f} s   pyhf/diffana {peer_s / diffana_s:6.2f}x"


def reference_numbers():
    if not REFERENCE.exists():
        return {}
    return json.loads(REFERENCE.read_text())["patches"]


def single_workspace(name: str, folder: Path, reference: dict, pyhf_limit: bool = True) -> None:
    workspace = patched_workspace(name, folder)
    print(f"\n== one workspace: bkg_only + patch_{name} ==")
    cold, warm, out = cold_and_warm(["diffana", "cls", str(workspace)], folder / "cache-cls")
    cls = json.loads(out)
    converging_s, converging_out = run(["pyhf", "cls", str(gamma_fixed_workspace(workspace))])
    shipped_s, shipped_out = run(["pyhf", "cls", str(workspace)])
    print("  peer: `pyhf cls` with the stiff gamma fixed (converging)")
    print(ratio_line("cls, cold cache (compile included)", cold, converging_s))
    print(ratio_line("cls, warm cache", warm, converging_s))
    print(f"  compile time (cold - warm): {cold - warm:.1f} s")
    print(f"  CLs_obs: diffana {cls['CLs_obs']:.6f}, converging pyhf {json.loads(converging_out)['CLs_obs']:.6f}, "
          f"pyhf as shipped {json.loads(shipped_out)['CLs_obs']:.6f} ({shipped_s:.1f} s; SLSQP stops at its start)")

    cold, warm, out = cold_and_warm(["diffana", "limit", str(workspace), "--cl", "0.95"], folder / "cache-limit")
    limits = json.loads(out)
    if not pyhf_limit:
        print(f"  limit (95% CL): diffana cold {cold:.1f} s, warm {warm:.1f} s (compile {cold - warm:.1f} s); "
              f"pyhf's converging limit not run (--no-pyhf-limit)")
        stored = reference.get(name.removeprefix("C1N2_WZ_"), {}).get("upper_limit_95")
        if stored and stored.get("observed") is not None and None not in stored["expected"]:
            theirs = [stored["observed"], *stored["expected"]]
            ours = [limits["obs"], *limits["exp"]]
            print(f"  limits vs stored converged pyhf: largest relative difference "
                  f"{max(abs(a / b - 1) for a, b in zip(ours, theirs)):.2e}")
        return
    script = folder / "pyhf_limit.py"
    script.write_text(PYHF_LIMIT)
    pyhf_s, pyhf_out = run([sys.executable, str(script), str(DATA / "bkg_only.json"), str(patch_path(name))])
    pyhf_limits = json.loads(pyhf_out)
    print(ratio_line("limit (95% CL), cold cache", cold, pyhf_s))
    print(ratio_line("limit (95% CL), warm cache", warm, pyhf_s))
    print(f"  compile time (cold - warm): {cold - warm:.1f} s")
    differences = [abs(a / b - 1) for a, b in zip([limits["obs"], *limits["exp"]],
                                                 [pyhf_limits["obs"], *pyhf_limits["exp"]])]
    print(f"  limits: diffana obs {limits['obs']:.5f} exp {['%.5f' % v for v in limits['exp']]}")
    print(f"          pyhf    obs {pyhf_limits['obs']:.5f} exp {['%.5f' % v for v in pyhf_limits['exp']]}"
          f"   largest relative difference {max(differences):.2e}")


def patchsets(names: list[str], sizes: list[int], folder: Path, reference: dict) -> None:
    print("\n== whole patchsets: cls at POI = 1 for N patches ==")
    print("  peer: pyhf's hypotest in one process, the stiff gamma fixed (converging)")
    bkg = str(DATA / "bkg_only.json")
    script = folder / "pyhf_loop.py"
    script.write_text(PYHF_LOOP)
    for n in sizes:
        paths = [str(patch_path(name)) for name in names[:n]]
        cold, warm, out = cold_and_warm(["diffana", "cls", bkg, "--patchset", *paths], folder / f"cache-patchset-{n}")
        results = json.loads(out)
        pyhf_s, _ = run([sys.executable, str(script), "converging", bkg, *paths])
        shipped_s, _ = run([sys.executable, str(script), "shipped", bkg, *paths])
        print(ratio_line(f"{n:2d} patches, cold cache", cold, pyhf_s))
        print(ratio_line(f"{n:2d} patches, warm cache", warm, pyhf_s))
        print(f"     pyhf as shipped (SLSQP, stops early): {shipped_s:.1f} s, "
              f"{shipped_s / cold:.2f}x cold, {shipped_s / warm:.2f}x warm")
        agreement(results, reference)


def agreement(results: dict, reference: dict) -> None:
    """Largest relative CLs difference against converged pyhf (gamma fixed)."""
    worst, compared, unconverged = 0.0, 0, 0
    for name, result in results.items():
        key = name.removeprefix("patch_").removeprefix("C1N2_WZ_")
        entry = reference.get(key, {})
        ref = entry.get("hypotest_tight", entry.get("hypotest"))  # SLSQP at tolerance 1e-10 where stored
        unconverged += not result.get("converged", True)
        if ref is None:
            continue
        ours = [result["CLs_obs"], *result["CLs_exp"]]
        theirs = [ref["cls_obs"], *ref["cls_exp"]]
        worst = max(worst, max(abs(a / b - 1) for a, b in zip(ours, theirs)))
        compared += 1
    print(f"     agreement with converged pyhf on {compared} patches: largest relative CLs difference "
          f"{worst:.2e}; unconverged: {unconverged}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="patchsets of 1 and 10 only")
    parser.add_argument("--patch", default=DEFAULT_PATCH, help=f"signal point of part 1-2 (default {DEFAULT_PATCH})")
    parser.add_argument("--skip-single", action="store_true", help="only the patchset part")
    parser.add_argument("--no-pyhf-limit", action="store_true",
                        help="skip pyhf's converging upper_limit (>30 min); compare diffana's limits with the stored ones")
    args = parser.parse_args()
    names = sorted(p.stem.removeprefix("patch_") for p in DATA.glob("patch_*.json"))
    reference = reference_numbers()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {len(names)} patches")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_single:
            single_workspace(args.patch, folder, reference, pyhf_limit=not args.no_pyhf_limit)
        patchsets(names, [1, 10] if args.quick else [1, 10, 60], folder, reference)


if __name__ == "__main__":
    main()
