"""The package as a user gets it: build the wheel (writing nothing into the clone), install it into a fresh venv, and from
an empty folder run every console script on a tiny real job (the real tiles of ../shared where one needs tiles). Each
script must answer --help, finish, and say on its last line where its outputs are; the outputs must land in that folder
and nowhere else, and the installed package and the clone must be as they were. Exit status 0 when all of that holds.

Usage: python3 .ci/wheel_check.py WORKDIR   (WORKDIR: an empty scratch folder for the wheel, the venv and the run)"""
import hashlib, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "roads"


def sh(cmd, timeout=1800, **kw):
    "Run `cmd`, print it and the tail of its output; returns the CompletedProcess."
    print("$", " ".join(map(str, cmd)), flush=True)
    t0 = time.time()
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout, **kw)
    tail = (r.stdout + r.stderr).strip().splitlines()[-12:]
    print("\n".join(f"    {l}" for l in tail) + f"\n    (exit {r.returncode}, {time.time() - t0:.1f} s)", flush=True)
    return r


def files(folder: Path) -> dict:
    "relative path -> SHA-256 of every file under `folder` (compiled bytecode aside)."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def clone_state() -> tuple:
    "The clone's top-level listing and git's view of it (a build must change neither)."
    git = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    return sorted(os.listdir(ROOT)), git


def two_real_tiles() -> list:
    "Image files of the first two tiles listed in ../shared/data/roads/tiles.csv."
    import csv
    with open(SHARED / "tiles.csv", newline="") as fh: rows = list(csv.DictReader(fh))[:2]
    return [next((SHARED / r["source"] / "images").glob(f"{r['stem']}.*")) for r in rows]


def main(work: Path) -> int:
    assert (SHARED / "tiles.csv").is_file(), f"no real tiles at {SHARED}"
    work.mkdir(parents=True, exist_ok=True)
    dist, venv, here = work / "dist", work / "venv", work / "empty"
    before = clone_state()
    assert sh([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", dist]).returncode == 0, "the wheel did not build"
    assert clone_state() == before, f"building the wheel changed the clone: {clone_state()} != {before}"
    wheel = next(dist.glob("roadgie-*.whl"))
    assert sh([sys.executable, "-m", "venv", venv]).returncode == 0
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    assert sh(pip + ["torch==2.13.0"]).returncode == 0 and sh(pip + [wheel]).returncode == 0, "the wheel did not install"
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ROADGIE_DATA", "ROADGIE_SHARED", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = sh([venv / "bin" / "python", "-c", "import roadgie, os; print(os.path.dirname(roadgie.__file__))"], cwd=here, env=env)
    pkg = Path(where.stdout.strip())
    assert pkg.is_relative_to(venv), f"roadgie imported from {pkg}, not from the venv"
    installed = files(pkg)
    jobs = [  # (command, a file it must write under the empty folder, words its output must hold)
        (["roadgie-demo"], "runs/demo/eval/table.md", "bundled in"),
        (["roadgie-eval", SHARED, "--rounds", "2", "--max-tiles", "5"], "runs/eval-test-centre/table.md", "mean over 5 tiles"),
        (["roadgie-train", "-p", "data_root", SHARED, "-p", "epochs", "1", "-p", "max_train_tiles", "4", "-p", "max_val_tiles", "2",
          "-p", "crop", "64", "-p", "batch", "2", "-p", "rounds", "2", "-p", "threads", "1", "--name", "tiny"],
         "runs/tiny/best.safetensors", "epoch 1/1 step"),
        (["roadgie-segment", *two_real_tiles()], "runs/segment/summary.csv", "px in all"),
        (["roadgie-bench", "--sizes", "64", "--models", "lite", "--backends", "torch"], "runs/bench/bench.md", "| lite |"),
    ]
    failed = []
    for cmd, made, words in jobs:
        h = sh([cmd[0], "--help"], cwd=here, env=env, timeout=120)
        r = sh(cmd, cwd=here, env=env)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        ok = (h.returncode == 0 and "usage:" in h.stdout and r.returncode == 0 and (here / made).is_file()
              and words in r.stdout and str(here / "runs") in last)
        print(f"{'ok' if ok else 'FAILED'}: {cmd[0]} wrote {here / made}" + ("" if ok else f"; last line: {last!r}"), flush=True)
        if not ok: failed.append(cmd[0])
    assert sorted(os.listdir(here)) == ["runs"], f"the empty folder holds more than runs/: {sorted(os.listdir(here))}"
    assert files(pkg) == installed, "a console script changed the installed package"
    assert clone_state() == before, "a console script changed the clone"
    print(f"wheel {wheel.name}: {len(jobs) - len(failed)} of {len(jobs)} console scripts ran from {here}, outputs under "
          f"{here / 'runs'}; installed package and clone unchanged" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__": sys.exit(main(Path(sys.argv[1])))
