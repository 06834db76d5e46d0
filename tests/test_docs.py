"""The documentation site, built and opened in a real browser.

Build it with `python tests/test_docs.py --build` (about 7 minutes on 2 cores; `--if-stale` keeps a build of the current
sources, which is how .ci/run reuses the one its test command's pytest made):

1. every notebook of nbs/ runs, as `nbdev_test` runs it (cells flagged slow, gpu or browser, `eval: false` cells and
   the `nbdev_export()` cell are skipped), each in its own process with nbs/ as its working directory, into a copy with
   its outputs under `_exec/`; nbdev's `show_doc` cells for the exported names are added and run with it;
2. nbdev processes `_exec/` into `_proc/` (`nbdev.serve.proc_nbs`: the step `nbdev_docs` runs before Quarto);
3. smalldocs (pure Python; it reads nbs/_quarto.yml, nbdev.yml and sidebar.yml as Quarto would) renders `_proc/` into
   `_docs/`. Quarto itself cannot be installed from the package registries (the pip package `quarto-cli` downloads
   its binaries at install time), so it is not used.

The notebooks in nbs/ are never written, nor is README.md: the build checks both. `_docs/docs-build.json` records what
the site was built from; the tests reuse a site built from the current sources and build one otherwise.

The tests: every notebook has a page with as many figures as its executed copy has pictures; and, in headless
Chromium (Debian's /usr/bin/chromium, driven by playwright, as in tests/test_browser.py) over a local http.server on
127.0.0.1, the home page and two chapters load with their figures decoded (naturalWidth > 0). Screenshots go to
runs/docs/. Without Chromium the browser test is skipped, unless CI=true, where it fails.
"""
import argparse, functools, hashlib, http.server, json, os, re, shutil, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from _chromium import CHROMIUM, local_page

REPO = Path(__file__).resolve().parents[1]
NBS, EXEC, PROC, DOCS = REPO / "nbs", REPO / "_exec", REPO / "_proc", REPO / "_docs"
STAMP = DOCS / "docs-build.json"
IN_CI = os.environ.get("CI", "").lower() == "true"


# ------------------------------------------------------------------ building the site

def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _notebooks() -> list:
    "The notebooks of nbs/ that become pages (nbdev skips names starting with `_` or `.`)."
    return sorted(p for p in NBS.glob("*.ipynb") if p.name[0] not in "_.")


def source_digest() -> str:
    "One hash of everything a build reads: nbs/, settings.ini, the package (code and weights) and data_samples/."
    h = hashlib.sha256()
    files = [REPO / "settings.ini"] + [p for d in ("nbs", "roadgie", "data_samples") for p in sorted((REPO / d).rglob("*"))
                                       if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    for p in files:
        h.update(p.relative_to(REPO).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _exec_one(src: Path, dst: Path, flags: set) -> int:
    "Run notebook `src` as nbdev_test does, with nbdev's show_doc cells added, and save it with its outputs to `dst`."
    from execnb.nbio import dict2nb, nb2dict, read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor, extract_directives
    from nbdev.processors import add_show_docs
    os.environ["IN_TEST"] = "1"
    nb = read_nb(src)
    NBProcessor(nb=nb, procs=[add_show_docs], rm_directives=False).process()  # show_doc(f) after each exported f
    for c in nb.cells: c.pop("has_sd", None)  # nbdev's marker on the cells it adds; not a notebook field
    nb = dict2nb(nb2dict(nb))  # number the cells again

    def skip(cell):
        if cell.cell_type != "code" or "nbdev_export" + "(" in cell.source: return True
        d = extract_directives(cell, remove=False)
        return d.get("eval:", [""])[0].lower() == "false" or bool(flags & d.keys())

    k = CaptureShell(src)
    k.run_cell("from nbdev.showdoc import show_doc")
    ok = True
    with working_directory(src.parent):
        try: k.run_all(nb, exc_stop=True, preproc=skip)
        except Exception:
            ok = False
            sys.stderr.write(k.prettytb(fname=src) + "\n")
    write_nb(nb, dst)  # also when a cell failed: the page then shows the traceback
    return 0 if ok else 1


def build_docs(workers: int = 0, timeout: int = 900, log=print) -> dict:
    "Build `_docs/` from nbs/ (see the module's docstring); returns the build record. Raises when any step fails."
    try:
        import smalldocs  # noqa: F401
    except ImportError:
        raise RuntimeError("smalldocs is not installed; `pip install -e '.[dev]'` installs the pinned version") from None
    t0 = time.time()
    readme0 = _sha(REPO / "README.md")
    nbs = _notebooks()
    nbs0 = {p.name: _sha(p) for p in nbs}
    digest = source_digest()
    for d in (EXEC, PROC): shutil.rmtree(d, ignore_errors=True)
    EXEC.mkdir()
    for p in NBS.iterdir():  # the site's configuration: _quarto.yml, nbdev.yml, sidebar.yml, styles.css
        if p.is_file() and p.suffix in (".yml", ".yaml", ".css"): shutil.copy2(p, EXEC / p.name)
    flags = set((REPO / "settings.ini").read_text().split("tst_flags", 1)[1].split("=", 1)[1].split("\n", 1)[0].split())
    workers = workers or min(2, os.cpu_count() or 1)
    log(f"docs: running {len(nbs)} notebooks into {EXEC.relative_to(REPO)}/ ({workers} at a time, skipping cells flagged {sorted(flags)})")

    def run(src):
        t = time.time()
        try:
            r = subprocess.run([sys.executable, __file__, "--exec-one", str(src), str(EXEC / src.name), " ".join(flags)],
                               cwd=NBS, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, MPLBACKEND="Agg"))
            rc, err = r.returncode, (r.stdout + r.stderr)[-4000:]
        except subprocess.TimeoutExpired:
            rc, err = -1, f"timed out after {timeout} s"
        log(f"docs:   {src.name}: {'ok' if rc == 0 else 'FAILED'} ({time.time() - t:.1f} s)")
        return src.name, rc, round(time.time() - t, 1), err

    with ThreadPoolExecutor(workers) as ex:
        runs = list(ex.map(run, nbs))
    t_exec = time.time() - t0
    failed = {name: err for name, rc, _, err in runs if rc != 0}
    missing = [p.name for p in nbs if not (EXEC / p.name).exists()]
    if missing: raise RuntimeError(f"no executed copy of {missing}:\n" + "\n".join(failed.get(m, "") for m in missing))

    t1 = time.time()
    log("docs: nbdev processes _exec/ into _proc/ (nbdev.serve.proc_nbs)")
    subprocess.run([sys.executable, "-c", "from nbdev.serve import proc_nbs; proc_nbs('_exec', n_workers=0, force=True)"],
                   cwd=REPO, check=True)
    log("docs: smalldocs renders _proc/ into _docs/")
    subprocess.run([sys.executable, "-c", "import sys; from smalldocs.cli import main; sys.exit(main(['render', '_proc', '--quiet']))"],
                   cwd=REPO, check=True)
    built = PROC / DOCS.name  # nbs/nbdev.yml: output-dir _docs, inside the project being rendered
    if not (built / "index.html").exists(): raise RuntimeError(f"the render wrote no {built}/index.html")
    shutil.rmtree(DOCS, ignore_errors=True)
    shutil.move(str(built), str(DOCS))
    pages = [p.stem for p in nbs if not (DOCS / f"{p.stem}.html").exists()]
    if pages: raise RuntimeError(f"no page for {pages} in {DOCS}")

    record = dict(sources=digest, seconds=round(time.time() - t0, 1), execute_seconds=round(t_exec, 1),
                  render_seconds=round(time.time() - t1, 1), workers=workers,
                  notebooks={name: dict(ok=rc == 0, seconds=s) for name, rc, s, _ in runs},
                  readme_unchanged=_sha(REPO / "README.md") == readme0,
                  notebooks_unchanged={p.name: _sha(p) for p in _notebooks()} == nbs0)
    STAMP.write_text(json.dumps(record, indent=1))
    log(f"docs: built {DOCS} in {record['seconds']} s (notebooks {record['execute_seconds']} s, "
        f"nbdev + smalldocs {record['render_seconds']} s)")
    if not record["readme_unchanged"]: raise RuntimeError("the docs build changed README.md")
    if not record["notebooks_unchanged"]: raise RuntimeError("the docs build changed notebooks in nbs/")
    if failed:
        raise RuntimeError(f"{len(failed)} notebook(s) failed (their pages show the traceback): {sorted(failed)}\n" +
                           "\n".join(f"---- {n}\n{e}" for n, e in failed.items()))
    return record


def current_build():
    "The build record of `_docs/` when it was built from the current sources, else None."
    try:
        rec = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return None
    ok = rec.get("sources") == source_digest() and all(v["ok"] for v in rec.get("notebooks", {}).values())
    return rec if ok else None


# ------------------------------------------------------------------ the tests

try:
    import pytest
except ImportError:  # `python tests/test_docs.py --build` needs no pytest
    pytest = None

if pytest is not None:
    def _need(cond, msg):
        if not cond:
            if IN_CI: pytest.fail(msg)
            pytest.skip(msg)

    @pytest.fixture(scope="module")
    def site():
        "The built site: `_docs/` as built from the current sources, building it first when it is missing or stale."
        rec = current_build()
        if rec is None:
            print(f"_docs/ is missing or was built from other sources: building it (python tests/test_docs.py --build)")
            rec = build_docs()  # raises, with the failing notebooks' tracebacks, when the build fails
        return rec

    def _sidebar_entries():
        return re.findall(r"^\s*-\s+(\S+\.ipynb)\s*$", (NBS / "sidebar.yml").read_text(), re.M)

    def test_sidebar_lists_every_notebook_once():
        entries = _sidebar_entries()
        assert sorted(entries) == sorted(p.name for p in _notebooks()), \
            f"nbs/sidebar.yml (custom_sidebar = True) must list every notebook once: it has {entries}"
        assert entries[0] == "index.ipynb"

    @pytest.mark.timeout(1800)
    def test_build_leaves_readme_and_notebooks_alone(site):
        assert site["readme_unchanged"], "the docs build changed README.md"
        assert site["notebooks_unchanged"], "the docs build changed notebooks in nbs/"
        assert "readme_nb" in (REPO / "settings.ini").read_text() and not (NBS / _readme_nb()).exists(), \
            "settings.ini's readme_nb must name no notebook, or nbdev_docs/nbdev_prepare would overwrite README.md"

    def _readme_nb():
        return re.search(r"^readme_nb\s*=\s*(\S+)", (REPO / "settings.ini").read_text(), re.M).group(1)

    def _pictures(nb_path):
        "How many pictures the executed notebook's shown outputs hold (cells hidden from the page excluded)."
        n = 0
        for c in json.loads(nb_path.read_text())["cells"]:
            src = "".join(c.get("source", ""))
            if c["cell_type"] != "code" or re.search(r"^#\|\s*(hide|include:\s*false|output:\s*false)", src, re.M): continue
            n += sum(any(k.startswith("image/") for k in o.get("data", {})) for o in c.get("outputs", []))
        return n

    _PLOT = re.compile(r"\bplt\.(subplots|figure)\(|\bshow_(tiles|world|rounds)\(")

    def _plots(nb_path):
        "Whether the notebook has a shown, run cell that draws (not exported, hidden or flagged to skip)."
        for c in json.loads(nb_path.read_text())["cells"]:
            src = "".join(c.get("source", ""))
            if c["cell_type"] == "code" and _PLOT.search(src) and \
               not re.search(r"^#\|\s*(export|hide|slow|gpu|browser|eval:\s*false|include:\s*false)", src, re.M):
                return True
        return False

    @pytest.mark.timeout(1800)
    def test_every_page_has_its_figures(site):
        "Each page embeds as many pictures as its executed notebook shows, and a chapter that draws shows some."
        counts = {}
        for p in _notebooks():
            html = (DOCS / f"{p.stem}.html").read_text()
            want = _pictures(_exec_copy(p))
            got = counts[p.stem] = len(re.findall(r'<img[^>]+src="data:image/', html))
            assert got >= want, f"{p.stem}.html shows {got} pictures; its executed notebook has {want}"
            assert got > 0 or not _plots(p), f"{p.stem} draws figures but its page shows none"
        print("figures per page:", counts)

    def _exec_copy(p):
        c = EXEC / p.name
        assert c.exists(), f"no executed copy {c}: build the docs (python tests/test_docs.py --build)"
        return c

    @pytest.fixture(scope="module")
    def server(site):
        "http.server over _docs/ on a free port of 127.0.0.1, in a thread; yields the base URL."
        handler = functools.partial(_QuietHandler, directory=str(DOCS))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
        try: yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally: httpd.shutdown(); httpd.server_close()

    class _QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass

    PAGES = [("index", 0), ("05_prompts", 3), ("12_evaluation", 1)]  # page, figures it must show at least

    @pytest.mark.browser
    @pytest.mark.timeout(1800)
    def test_docs_pages_in_chromium(server, tmp_path):
        "The home page and two chapters load in Chromium, with no page error, no failed request and decoded figures."
        _need(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium fonts-dejavu-core)")
        out = REPO / "runs" / "docs"; out.mkdir(parents=True, exist_ok=True)
        bad, report = [], {}
        with local_page(tmp_path / "chrome", 1400, 1000) as (page, errors):
            page.on("response", lambda r: bad.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            for name, at_least in PAGES:
                page.goto(f"{server}/{name}.html", wait_until="load")
                imgs = page.evaluate("""() => [...document.querySelectorAll('main img, #quarto-document-content img, .cell-output img')]
                    .map(i => ({w: i.naturalWidth, h: i.naturalHeight, done: i.complete}))""")
                shown = [i for i in imgs if i["done"] and i["w"] > 0 and i["h"] > 0]
                title = page.title()
                page.screenshot(path=str(out / f"{name}.png"), full_page=False)
                report[name] = dict(title=title, images=len(imgs), decoded=len(shown))
                assert len(shown) == len(imgs), f"{name}.html: {len(imgs) - len(shown)} of {len(imgs)} images did not load"
                assert len(shown) >= at_least, f"{name}.html shows {len(shown)} figures, expected at least {at_least}"
                if name == "index":
                    assert "roadgie" in title.lower(), f"home page title: {title!r}"
                    links = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
                    for nb in _notebooks():
                        if nb.stem != "index":
                            assert any(l and l.split("#")[0].endswith(f"{nb.stem}.html") for l in links), \
                                f"the home page has no link to {nb.stem}.html"
                else:  # scroll the first figure into view and keep a picture of it
                    fig = page.locator(".cell-output img").first
                    fig.scroll_into_view_if_needed()
                    page.screenshot(path=str(out / f"{name}_figure.png"))
        (out / "docs_result.json").write_text(json.dumps(dict(pages=report, page_errors=errors, failed_requests=bad), indent=1))
        assert not errors, f"page errors: {errors}"
        assert not bad, f"failed requests: {bad}"


# ------------------------------------------------------------------ command line

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Build the documentation site _docs/ (see this file's docstring).")
    ap.add_argument("--build", action="store_true", help="run the notebooks and render _docs/")
    ap.add_argument("--if-stale", action="store_true", help="with --build: do nothing when _docs/ is built from the current sources")
    ap.add_argument("--workers", type=int, default=0, help="notebooks run at a time (default: min(2, CPUs))")
    ap.add_argument("--exec-one", nargs=3, metavar=("SRC", "DST", "FLAGS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.exec_one:
        sys.exit(_exec_one(Path(a.exec_one[0]), Path(a.exec_one[1]), set(a.exec_one[2].split())))
    if not a.build: ap.error("nothing to do: pass --build")
    if a.if_stale and current_build():
        print(f"docs: {DOCS} is built from the current sources"); sys.exit(0)
    try:
        build_docs(workers=a.workers)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"docs: FAILED: {e}", file=sys.stderr); sys.exit(1)
    print(f"docs: open {DOCS / 'index.html'}, or serve it: python -m http.server -d _docs -b 127.0.0.1 8000")
