"""``diffana generate``: simulate Belle II samples to ROOT, or print a yield summary.

    diffana generate --process tautau --lumi 1.0 --seed 1 --out tautau.root
    diffana generate --process signal --mass 2.0 --events 100000 --out zp2.root
    diffana generate --summary --lumi 1.0

The summary prints, per background process, the events per ``--lumi`` fb⁻¹
generated (σ·L) and passing :func:`diffana.physics.preselection`, with the
background shares after it (add ``--mass M`` for a signal row with g' = 1).
"""

from __future__ import annotations

import argparse

from diffana.cli import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="simulate e+e- -> mu mu (+invisible) samples with the fast Belle II model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--process", choices=["signal", "mumu", "tautau", "eemumu"], help="process to generate")
    parser.add_argument("--lumi", type=float, default=1.0, help="integrated luminosity in fb^-1 (default 1.0)")
    parser.add_argument("--mass", type=float, help="Z' mass in GeV (signal only)")
    parser.add_argument("--events", type=int, help="number of events (default: sigma*L; 100000 for the signal)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--out", help="output ROOT file (TTree 'events')")
    parser.add_argument("--unweighted", action="store_true", help="unweighted events (equal weights)")
    parser.add_argument("--summary", action="store_true", help="print events per lumi before/after preselection")
    parser.add_argument(
        "--summary-events", type=int, default=200_000, help="events simulated per process for --summary"
    )
    parser.set_defaults(func=run)


def _progress(total: int, description: str):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TimeRemainingColumn(),
        transient=False,
    )
    task = progress.add_task(description, total=total)
    return progress, lambda n: progress.advance(task, n)


def run(args) -> int:
    if args.lumi <= 0:
        raise CommandError(f"--lumi must be positive (fb^-1), got {args.lumi}")
    if args.summary:
        return _summary(args)
    if args.process is None:
        raise CommandError("--process is required (or use --summary)")
    if args.out is None:
        raise CommandError("--out FILE.root is required")
    if args.process == "signal" and args.mass is None:
        raise CommandError("--mass (GeV) is required for --process signal")
    if args.process != "signal" and args.mass is not None:
        raise CommandError("--mass only applies to --process signal")
    if args.events is not None and args.events <= 0:
        raise CommandError(f"--events must be positive, got {args.events}")

    from diffana.io import write_sample
    from diffana.physics import expected_events, generate

    try:
        n_events = args.events
        if n_events is None:
            n_events = 100_000 if args.process == "signal" else max(1, round(expected_events(args.process, args.lumi)))
        progress, advance = _progress(n_events, f"{args.process} (L = {args.lumi:g} fb⁻¹)")
        with progress:
            sample = generate(
                args.process,
                args.lumi,
                n_events=n_events,
                mass=args.mass,
                seed=args.seed,
                unweighted=args.unweighted,
                progress=advance,
            )
    except ValueError as error:
        raise CommandError(str(error)) from error
    write_sample(args.out, sample)
    print(
        f"wrote {len(sample['weight']):,} {args.process} events "
        f"({sample['weight'].sum():.6g} expected at {args.lumi:g} fb⁻¹) to {args.out}"
    )
    return 0


def summary_table(luminosity: float, n_events: int = 200_000, seed: int = 1, progress=None, signal_mass=None):
    """Rows ``(process, events generated, events after preselection)`` per ``luminosity`` fb⁻¹
    for the three backgrounds (and the Z' signal at ``signal_mass`` GeV, g' = 1, if
    given), each simulated with ``n_events`` weighted events."""
    from diffana.physics import BACKGROUND_PROCESSES, generate, preselection

    rows = []
    processes = list(BACKGROUND_PROCESSES) + (["signal"] if signal_mass is not None else [])
    for process in processes:
        mass = signal_mass if process == "signal" else None
        sample = generate(process, luminosity, n_events=n_events, seed=seed, mass=mass, progress=progress)
        mask = preselection(sample)
        rows.append((process, float(sample["weight"].sum()), float(sample["weight"][mask].sum())))
    return rows


def _summary(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from diffana.physics import BACKGROUND_PROCESSES

    if args.summary_events <= 0:
        raise CommandError(f"--summary-events must be positive, got {args.summary_events}")
    n_processes = len(BACKGROUND_PROCESSES) + (args.mass is not None)
    progress, advance = _progress(args.summary_events * n_processes, "simulating")
    try:
        with progress:
            rows = summary_table(args.lumi, args.summary_events, args.seed, advance, signal_mass=args.mass)
    except ValueError as error:
        raise CommandError(str(error)) from error
    signal = [r for r in rows if r[0] == "signal"]
    rows = [r for r in rows if r[0] != "signal"]
    total_after = sum(r[2] for r in rows)
    table = Table(title=f"Expected events for L = {args.lumi:g} fb⁻¹ (√s = 10.58 GeV)")
    table.add_column("process")
    table.add_column("generated", justify="right")
    table.add_column("after preselection", justify="right")
    table.add_column("share after", justify="right")
    for process, before, after in rows:
        share = after / total_after if total_after > 0 else 0.0
        table.add_row(process, f"{before:,.0f}", f"{after:,.1f}", f"{100 * share:.1f}%")
    table.add_row("total background", f"{sum(r[1] for r in rows):,.0f}", f"{total_after:,.1f}", "100.0%")
    for _, before, after in signal:
        table.add_row(f"signal M={args.mass:g} GeV, g'=1", f"{before:,.0f}", f"{after:,.1f}", "")
    Console().print(table)
    return 0
