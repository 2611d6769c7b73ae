"""python -m bench [module ...]: run benchmarks and print one table."""

import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

import bench


def discover() -> list[str]:
    path = Path(bench.__file__).parent
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(path)])
        if not info.name.startswith("_") and not info.ispkg
    )


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tuco.settings")
    bench.ensure_database()
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("(no results)")
        return
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def main(argv: list[str]) -> int:
    available = discover()
    wanted = argv or available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    setup_django()
    rows: list[dict] = []
    for name in wanted:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "run", None)
        if not callable(run):
            continue
        started = time.perf_counter()
        print(f"running bench.{name} ...", file=sys.stderr, flush=True)
        rows.extend({"bench": name, **row} for row in run())
        print(f"  done in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
