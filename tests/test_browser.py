"""The built site in a real browser: every page renders, every image loads, every internal
link and anchor resolves, search works, and nothing logs an error or reaches off the machine.

Needs the site in ``_build/html`` (``make book``; ``make test`` builds it before running
this) and Debian's Chromium (``make browser-deps``). Without them the tests skip, except
under CI (``CI=true``), where they fail. Screenshots of the home page and of a chapter are
saved to ``_build/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
from conftest import load_script, toc_files
from test_course_shape import CHAPTERS as COURSE_CHAPTERS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCREENSHOT_CHAPTER = "book/reproducing"


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (required in CI)")
    pytest.skip(message)


# --------------------------------------------------------------------------- fixtures


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The built site, served on 127.0.0.1 at a free port."""
    if not (HTML / "index.html").exists():
        _missing(f"no built site at {HTML.relative_to(ROOT)}: run `make book` first")
    handler = functools.partial(_Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(site):
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: run `make browser-deps` (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """One page load, with everything the page complained about or fetched from elsewhere."""

    def __init__(self, browser, site: str, path: str, width: int = 1280) -> None:
        self.site = site
        self.errors: list[str] = []
        self.external: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        self.page.on(
            "requestfailed",
            lambda req: self.errors.append(f"request failed: {req.url} ({req.failure})"),
        )
        self.page.on("request", self._request)
        response = self.page.goto(urljoin(site, path), wait_until="load")
        assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"console error: {msg.text} at {msg.location.get('url')}")

    def _request(self, request) -> None:
        if not request.url.startswith(self.site) and not request.url.startswith("data:"):
            self.external.append(request.url)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def visit(browser, site):
    opened: list[Visit] = []

    def open_page(path: str, width: int = 1280) -> Visit:
        opened.append(Visit(browser, site, path, width))
        return opened[-1]

    yield open_page
    for v in opened:
        v.close()


# --------------------------------------------------------------------------- helpers

_ANCHOR = re.compile(r"""\s(?:id|name)=["']([^"']+)["']""")


@functools.cache
def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read().decode("utf-8", errors="replace")
            return response.status, body
    except urllib.error.HTTPError as err:
        return err.code, ""


def _broken_images(page) -> list[str]:
    """Sources of images that did not load (after forcing lazy ones to load)."""
    return page.evaluate(
        """async () => {
            const broken = [];
            for (const img of Array.from(document.images)) {
                img.loading = "eager";
                try { await img.decode(); } catch (e) {}
                if (!img.complete || img.naturalWidth === 0) broken.push(img.currentSrc || img.src);
            }
            return broken;
        }"""
    )


def _overflowing(page) -> list[str]:
    """Elements that stick out of the viewport's right edge without a scrolling box of their
    own between them and the page (what makes a reader scroll the whole page sideways)."""
    return page.evaluate(
        r"""() => {
            const width = document.documentElement.clientWidth;
            const scrolls = (el) => {
                for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
                    const o = getComputedStyle(a).overflowX;
                    if (o === "auto" || o === "scroll" || o === "hidden" || o === "clip")
                        return true;
                }
                return false;
            };
            const out = [];
            for (const el of document.querySelectorAll(".bd-article *")) {
                const r = el.getBoundingClientRect();
                if (r.width > 0 && r.right > width + 1 && !scrolls(el)) {
                    const text = (el.innerText || "").trim().slice(0, 40).replace(/\s+/g, " ");
                    out.push(`<${el.tagName.toLowerCase()} class="${el.className}"> "${text}"`);
                }
            }
            if (document.documentElement.scrollWidth > width + 1)
                out.push(`page ${document.documentElement.scrollWidth}px wide in ${width}px`);
            return out;
        }"""
    )


_PLACEHOLDER_ALT = re.compile(r"(^|/)[0-9a-f]{16,}\.(png|svg|jpe?g)$")


# --------------------------------------------------------------------------- tests

PAGES = toc_files()
SOURCE_PAGES = sorted(
    str(p.relative_to(HTML).with_suffix("")) for p in (HTML / "_modules").rglob("*.html")
)


@pytest.mark.parametrize("doc", PAGES)
def test_page_renders_cleanly(visit, site, doc):
    v = visit(f"{doc}.html")
    heading = v.page.locator("main h1").first
    assert heading.count() == 1, f"{doc}: no <h1> title"
    assert heading.inner_text().strip(), f"{doc}: empty <h1> title"
    assert _broken_images(v.page) == [], f"{doc}: images that did not load"
    v.page.wait_for_load_state("networkidle")
    assert v.errors == [], f"{doc}: the browser reported errors:\n" + "\n".join(v.errors)
    assert v.external == [], f"{doc}: fetched from outside the site:\n" + "\n".join(v.external)


@pytest.mark.parametrize("width", [1280, 400])
@pytest.mark.parametrize("doc", PAGES)
def test_nothing_pushes_the_page_sideways(visit, doc, width):
    """Wide tables, equations and code scroll inside their own box (book/_static/forgetkit.css)."""
    v = visit(f"{doc}.html", width=width)
    v.page.wait_for_load_state("networkidle")
    wide = _overflowing(v.page)
    assert wide == [], f"{doc} at {width}px: content wider than the page:\n" + "\n".join(wide[:20])


@pytest.mark.parametrize("doc", PAGES)
def test_figures_have_alt_text(visit, doc):
    """Every figure's image is described (book/_ext/forgetkit_sphinx.py takes the caption)."""
    v = visit(f"{doc}.html")
    alts = v.page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.alt || '')")
    bad = [a for a in alts if not a.strip() or _PLACEHOLDER_ALT.search(a)]
    assert bad == [], f"{doc}: figures without a description: {bad}"


# Docstring tables of the reference pages, not results.
UNNUMBERED_TABLES_ALLOWED = tuple(d for d in PAGES if d == "book/api" or d.startswith("book/api/"))


@pytest.mark.parametrize("doc", [d for d in PAGES if d not in UNNUMBERED_TABLES_ALLOWED])
def test_every_table_is_numbered_and_captioned(visit, doc):
    """A reader can cite "Table 3" and read what it shows: every table on a chapter page
    has a numbered caption (a MyST ``{table}`` directive, see forgetkit/tables.py)."""
    v = visit(f"{doc}.html")
    bare = v.page.eval_on_selector_all(
        ".bd-article table",
        """tables => tables
            .filter(t => !t.querySelector(':scope > caption .caption-number'))
            .map(t => (t.innerText || '').trim().slice(0, 60).replace(/\\s+/g, ' '))""",
    )
    assert bare == [], f"{doc}: tables without a number and caption: {bare}"


@pytest.mark.parametrize("doc", PAGES + SOURCE_PAGES)
def test_internal_links_and_anchors_resolve(visit, site, doc):
    v = visit(f"{doc}.html")
    hrefs = v.page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    problems = []
    for href in hrefs:
        if not href.startswith(site):
            continue  # external (launch buttons, repository, papers): not checked offline
        target, fragment = urldefrag(href)
        status, body = _fetch(target)
        if status != 200:
            problems.append(f"{href}: HTTP {status}")
        elif (
            fragment
            and urlsplit(target).path.endswith(".html")
            and fragment not in set(_ANCHOR.findall(body))
        ):
            problems.append(f"{href}: no element with id {fragment!r}")
    assert problems == [], f"{doc}: broken internal links:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- figures

CATALOGUE = "book/figures"
CHAPTERS = [d for d in PAGES if (ROOT / "book" / "src" / f"{Path(d).name}.md").exists()]


@functools.cache
def _catalogue(site: str) -> tuple[dict[str, dict], list[str]]:
    """The catalogue's records (figures.json, found through its download link) by page
    and anchor, and every download link of the catalogue page."""
    status, body = _fetch(urljoin(site, f"{CATALOGUE}.html"))
    assert status == 200, f"{CATALOGUE}.html: HTTP {status}"
    links = [
        urljoin(urljoin(site, f"{CATALOGUE}.html"), href)
        for href in re.findall(r'<a class="reference download internal"[^>]*href="([^"]+)"', body)
    ]
    index = [link for link in links if link.endswith("/figures.json")]
    assert len(index) == 1, f"{CATALOGUE}: no single link to figures.json among {links}"
    status, text = _fetch(index[0])
    assert status == 200, f"{index[0]}: HTTP {status}"
    records = {f"book/{r['chapter']}#{r['label']}": r for r in json.loads(text)}
    entries = set(re.findall(r'href="([a-z_]+)\.html#(fig-[^"]+)"', body))
    missing = [key for key in records if tuple(key[5:].split("#")) not in entries]
    assert missing == [], f"{CATALOGUE}: records without a link to their figure: {missing}"
    return records, links


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_figure_is_in_the_catalogue(visit, site, doc):
    """Each numbered figure of a chapter has a catalogue entry (downloads, provenance,
    citation): chapters publish figures with forgetkit.figures.publish_figure."""
    records, _ = _catalogue(site)
    v = visit(f"{doc}.html")
    ids = v.page.eval_on_selector_all("figure[id]", "figs => figs.map(f => f.id)")
    missing = [i for i in ids if f"{doc}#{i}" not in records]
    assert missing == [], f"{doc}: figures missing from the catalogue ({CATALOGUE}): {missing}"


def test_catalogue_downloads_work(site):
    """Every download of the catalogue answers, and each is what it says: an SVG document
    with a size, a CSV table with a header and rows."""
    records, links = _catalogue(site)
    assert records, f"{CATALOGUE}: the catalogue lists no figure"
    problems = []
    for link in links:
        status, body = _fetch(link)
        if status != 200:
            problems.append(f"{link}: HTTP {status}")
        elif link.endswith(".svg") and not re.search(r"<svg[^>]*\swidth=\"[0-9.]+pt\"", body):
            problems.append(f"{link}: not an SVG document with a width")
        elif link.endswith(".csv") and (len(body.splitlines()) < 2 or "," not in body):
            problems.append(f"{link}: not a CSV table with rows")
    names = {Path(urlsplit(link).path).name for link in links}
    for record in records.values():
        for file in (record["svg"], record["csv"]):
            if file not in names:
                problems.append(f"{record['label']}: no download of {file}")
    assert problems == [], f"{CATALOGUE}: broken downloads:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", CHAPTERS)
def test_glued_values_take_the_prose_weight(visit, doc):
    """A glued number reads as part of its sentence: not bold where the prose is not
    (myst-nb sets pasted text in bold; book/_static/forgetkit.css undoes it)."""
    v = visit(f"{doc}.html")
    bold = v.page.eval_on_selector_all(
        ".bd-article span.pasted-text",
        """spans => spans
            .filter(s => getComputedStyle(s).fontWeight
                         !== getComputedStyle(s.parentElement).fontWeight)
            .map(s => (s.innerText || '').trim().slice(0, 40))""",
    )
    assert bold == [], f"{doc}: glued values set in another weight than their prose: {bold[:10]}"


def _out_of_order(numbers: list[str]) -> list[str]:
    """Section numbers ("12.7", "12.7.1") that do not follow the one before them."""
    bad, previous = [], None
    for number in numbers:
        parts = [int(p) for p in number.split(".")]
        if previous is not None:
            depth = len(parts)
            expected = (previous + [0] * depth)[:depth]
            expected[-1] += 1
            if len(parts) > len(previous) + 1 or parts != expected:
                bad.append(f"{'.'.join(map(str, previous))} -> {number}")
        previous = parts
    return bad


def test_the_order_rule_can_fail():
    assert _out_of_order(["12", "12.1", "12.2", "12.2.1", "12.3"]) == []
    assert _out_of_order(["12.7", "12.7.20"]) == ["12.7 -> 12.7.20"]


@pytest.mark.parametrize("doc", PAGES)
def test_headings_number_in_order(visit, doc):
    """Section numbers count up one by one (12.7, 12.7.1, ..., 12.8): nothing invisible,
    such as an API object, takes a number."""
    v = visit(f"{doc}.html")
    numbers = v.page.eval_on_selector_all(
        ".bd-article :is(h1, h2, h3, h4) .section-number",
        "spans => spans.map(s => s.innerText.trim().replace(/\\.$/, ''))",
    )
    bad = _out_of_order([n for n in numbers if n])
    assert bad == [], f"{doc}: section numbers out of order: {bad}"


@pytest.mark.parametrize("doc", PAGES)
def test_no_file_name_is_linked_as_a_website(visit, doc):
    """linkify turns only URLs with a scheme into links: "train.py" stays a file name."""
    v = visit(f"{doc}.html")
    links = v.page.eval_on_selector_all(".bd-article a[href]", "as => as.map(a => a.href)")
    bad = [h for h in links if re.match(r"https?://[^/]+\.(py|ipynb|json|txt|md|toml|csv)/?$", h)]
    assert bad == [], f"{doc}: file names linked as websites: {bad}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_figure_opens_full_size(visit, doc):
    """Each figure is a link to its own SVG, so a reader can enlarge it."""
    v = visit(f"{doc}.html")
    unlinked = v.page.eval_on_selector_all(
        "figure[id]",
        """figs => figs.filter(f => {
            const a = f.querySelector("a > img") && f.querySelector("a > img").parentElement;
            const img = f.querySelector("img");
            return !a || !img || a.getAttribute("href") !== img.getAttribute("src");
        }).map(f => f.id)""",
    )
    assert unlinked == [], f"{doc}: figures that do not link to their image: {unlinked}"


@pytest.mark.parametrize("width", [1280, 400])
@pytest.mark.parametrize("doc", CHAPTERS)
def test_figure_text_is_at_least_10px(visit, site, doc, width):
    """The smallest text of each figure, as drawn on the page, is at least 10 CSS px, on a
    desktop and on a phone (where figures keep their width and scroll in their own box).

    The figures are SVG shown as images, whose text the page's DOM cannot see, so the
    browser cannot be asked for a font size; instead publish_figure records the smallest
    font matplotlib drew (in
    pt, the SVG's own unit, and the SVG's width in pt), and here the browser says how wide
    the image is shown: text px = font pt x shown width px / SVG width pt. The image must
    be that SVG (a raster would have its own scale).
    """
    records, _ = _catalogue(site)
    v = visit(f"{doc}.html", width=width)
    shown = v.page.eval_on_selector_all(
        "figure[id]",
        """figs => figs.map(f => {
            const img = f.querySelector("img");
            return [f.id, img ? img.getAttribute("src") : "", img ? img.clientWidth : 0];
        })""",
    )
    small = []
    for anchor, src, width in shown:
        record = records.get(f"{doc}#{anchor}")
        if record is None:
            continue  # test_every_figure_is_in_the_catalogue names it
        if not src.endswith(".svg"):
            small.append(f"{anchor}: shown as {src!r}, not as its SVG")
            continue
        px = record["min_font_pt"] * width / record["width_pt"]
        if px < 10:
            small.append(f"{anchor}: smallest text {px:.1f} px (image {width} px wide)")
    assert small == [], f"{doc}: figure text under 10 px at {width} px:\n" + "\n".join(small)


def test_home_page_leads_to_the_book(visit):
    v = visit("index.html")
    v.page.wait_for_load_state("networkidle")
    assert "forgetkit" in v.page.locator("main h1").first.inner_text().lower()
    titles = v.page.eval_on_selector_all("nav.bd-links a", "links => links.map(a => a.innerText)")
    assert any("Reproducing" in t for t in titles), f"table of contents: {titles}"


def test_search_finds_the_book(visit):
    v = visit("search.html?q=forget")
    results = v.page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=30_000)
    assert results.count() >= 3, "search for 'forget' found almost nothing"
    assert v.errors == []


def test_screenshots(visit):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for path, name in (("index.html", "home.png"), (f"{SCREENSHOT_CHAPTER}.html", "chapter.png")):
        v = visit(path)
        v.page.wait_for_load_state("networkidle")
        v.page.screenshot(path=str(SCREENSHOTS / name))
        assert (SCREENSHOTS / name).stat().st_size > 10_000, f"{name} looks empty"
    figure = visit(f"{SCREENSHOT_CHAPTER}.html").page.locator("figure").first
    figure.scroll_into_view_if_needed()
    figure.screenshot(path=str(SCREENSHOTS / "figure.png"))


def _built(doc: str) -> str:
    if not (HTML / "index.html").exists():
        _missing(f"no built site at {HTML.relative_to(ROOT)}: run `make book` first")
    return (HTML / f"{doc}.html").read_text()


_TAGS = re.compile(r"<[^>]+>")
_BIB_ENTRY = re.compile(
    r'<div class="citation" id="([^"]+)"[^>]*>\s*<span class="label">(.*?)</span>\s*</span>', re.S
)
_IN_TEXT = re.compile(
    r'<a class="reference internal" href="(?:\.\./)*bibliography\.html#([^"]+)"[^>]*>(.*?)</a>'
)


def _text(html: str) -> str:
    return " ".join(_TAGS.sub("", html).replace("[", " ").replace("]", " ").split())


def test_citations_tell_every_entry_apart():
    """The bibliography's author-year labels are all different and it holds every entry of
    book/references.bib (it lists only cited ones); every in-text citation reads as its
    entry's label ("Golatkar et al., 2020a") or, after the authors' names, its year
    ("2020a"), so two entries never render alike (book/_ext/forgetkit_sphinx.py)."""
    labels = {
        anchor: _text(label) for anchor, label in _BIB_ENTRY.findall(_built("book/bibliography"))
    }
    assert labels, "no bibliography entries found in book/bibliography.html"
    clashes = sorted(lab for lab, n in Counter(labels.values()).items() if n > 1)
    assert clashes == [], f"bibliography entries sharing a label: {clashes}"
    bib = (ROOT / "book" / "references.bib").read_text()
    entries = re.findall(r"^@\w+\{([^,]+),", bib, re.M)
    assert len(labels) == len(entries), (
        f"the bibliography shows {len(labels)} of the {len(entries)} entries of "
        "book/references.bib: the others are cited nowhere"
    )
    wrong, cited = [], set()
    for doc in PAGES:
        for anchor, text in _IN_TEXT.findall(_built(doc)):
            text, label = _text(text), labels.get(anchor)
            cited.add(anchor)
            if label is None or text not in (label, label.rsplit(", ", 1)[-1]):
                wrong.append(f"{doc}: {text!r} links to {anchor} labelled {label!r}")
    assert wrong == [], "in-text citations that do not read as their entry:\n" + "\n".join(wrong)
    assert sorted(set(labels) - cited) == [], "bibliography entries no page cites"


@pytest.mark.parametrize(
    "doc", [d for d in PAGES if (ROOT / "book/src" / f"{Path(d).name}.md").exists()]
)
def test_setup_cells_are_not_on_the_page(doc):
    """The Colab install cell and papermill's injected parameters never show (the build tags
    them remove-cell: scripts/build_book.py, hide_setup_cells); the parameters cell does."""
    page = _built(doc)
    assert "google.colab" not in page, f"{doc}: the Colab install cell is visible"
    assert "tag_injected-parameters" not in page, f"{doc}: papermill's injected cell is visible"
    assert "tag_parameters" in page, f"{doc}: the parameters cell is gone too"


def test_site_names_only_the_configured_repository():
    """Every URL for the project in the built site (launch buttons, repository and issues
    buttons, the Colab install lines, page sources and notebooks) is the one set as
    repository.url in _config.yml; see scripts/repository.py."""
    if not (HTML / "index.html").exists():
        _missing(f"no built site at {HTML.relative_to(ROOT)}: run `make book` first")
    repository = load_script("repository")
    problems = repository.check(ROOT, site=HTML)
    assert problems == [], "links to another repository:\n" + "\n".join(problems)
    owner, name = repository.owner_name(repository.configured_url(ROOT))
    pages = "\n".join(p.read_text(errors="ignore") for p in HTML.glob("book/*.html"))
    for button in (
        f"colab.research.google.com/github/{owner}/{name}/blob/",
        f"mybinder.org/v2/gh/{owner}/{name}/",
        f"github.com/{owner}/{name}/issues",
    ):
        assert button in pages, (
            f"no launch or issues button for the configured repository: {button}"
        )


# --------------------------------------------------------------------------- catalogue page


def _catalogue_entries(visit, site) -> tuple[dict[str, dict], list[dict]]:
    """The catalogue's records, and what its page shows for each: the heading, the
    thumbnail (its link, source, shown width, whether it loaded) and the provenance line."""
    records, _ = _catalogue(site)
    v = visit(f"{CATALOGUE}.html")
    _broken_images(v.page)  # loads the lazy thumbnails; each entry reports its own
    shown = v.page.evaluate(
        """labels => labels.map(label => {
            const target = document.getElementById(label + "-entry");
            const section = target && target.closest("section");
            if (!section) return {label: label, missing: true};
            const heading = section.querySelector("h3");
            const img = section.querySelector("a > img");
            const item = [...section.querySelectorAll("li")]
                .find(li => li.innerText.trim().startsWith("Computed"));
            return {
                label: label,
                heading: heading ? heading.innerText.replace(/#$/, "")
                    .replace(/^[0-9.]+\\s*/, "").trim() : "",
                href: img ? img.parentElement.getAttribute("href") : "",
                src: img ? img.getAttribute("src") : "",
                width: img ? img.clientWidth : 0,
                loaded: img ? img.naturalWidth > 0 : false,
                computed: item ? item.innerText : "",
            };
        })""",
        [r["label"] for r in records.values()],
    )
    return records, shown


def test_catalogue_entries_have_titles_and_thumbnails(visit, site):
    """Each entry is headed by its caption's first sentence, not the figure's name, and
    shows a small copy of the figure (its own SVG) that opens it in its chapter."""
    records, shown = _catalogue_entries(visit, site)
    by_label = {r["label"]: r for r in records.values()}
    bad = []
    for entry in shown:
        label = entry["label"]
        if entry.get("missing"):
            bad.append(f"{label}: no entry {label}-entry")
            continue
        if not entry["heading"] or re.fullmatch(r"fig-[a-z0-9-]+", entry["heading"]):
            bad.append(f"{label}: heading {entry['heading']!r} is not a title")
        chapter = by_label[label]["chapter"]
        if not entry["href"].endswith(f"{chapter}.html#{label}"):
            bad.append(f"{label}: thumbnail links to {entry['href']!r}")
        if Path(urlsplit(entry["src"]).path).name != by_label[label]["svg"]:
            bad.append(f"{label}: thumbnail {entry['src']!r} is not the figure's SVG")
        if not entry["loaded"] or not 0 < entry["width"] <= 320:
            bad.append(f"{label}: thumbnail {entry['width']} px wide, loaded {entry['loaded']}")
    assert bad == [], f"{CATALOGUE}: entries without a title or thumbnail:\n" + "\n".join(bad)


def test_catalogue_states_each_fact_once(visit, site):
    """An entry's provenance names the device once and lists no seed twice ("device cpu
    ... device cpu", "seeds 0, 0, 1, 2" were both printed once)."""
    records, shown = _catalogue_entries(visit, site)
    by_label = {r["label"]: r for r in records.values()}
    bad = []
    for entry in shown:
        text = entry.get("computed", "")
        if not text:
            bad.append(f"{entry['label']}: no 'Computed' line")
            continue
        device = by_label[entry["label"]]["device"]
        profile = by_label[entry["label"]]["profile"]
        # A profile may share the device's name (the bench's "cpu" scale on a cpu): the
        # words "profile cpu" name the profile, not the device.
        rest = re.sub(rf"\bprofile\W+{re.escape(profile)}\b", "profile", text)
        if len(re.findall(rf"\b{re.escape(device)}\b", rest)) != 1:
            bad.append(f"{entry['label']}: device {device!r} not named once in {text!r}")
        if len(re.findall(rf"\bprofile\W+{re.escape(profile)}\b", text)) != 1:
            bad.append(f"{entry['label']}: profile {profile!r} not named once in {text!r}")
        for numbers in re.findall(r"\d+(?:, \d+)+", text.split("data")[0]):
            seeds = [int(n) for n in numbers.split(", ")]
            if seeds != sorted(set(seeds)):
                bad.append(f"{entry['label']}: seeds {numbers} repeat or are out of order")
    assert bad == [], f"{CATALOGUE}: facts stated more than once:\n" + "\n".join(bad)


HEIGHT_BUDGET = 15000  # px at 1280 px: a course page a reader finishes
COURSE_PAGES = [f"book/{name}" for name in COURSE_CHAPTERS]  # Foundations and Methods


@pytest.mark.parametrize("doc", COURSE_PAGES)
def test_course_page_fits_the_height_budget(visit, doc):
    """A course page (the parts Foundations and Methods) stays within the height budget;
    its lab notes page holds the rest (its height is not budgeted)."""
    v = visit(f"{doc}.html", width=1280)
    v.page.wait_for_load_state("networkidle")
    height = v.page.evaluate("() => document.documentElement.scrollHeight")
    assert height <= HEIGHT_BUDGET, (
        f"{doc}: {height} px tall at 1280 px, over the budget of {HEIGHT_BUDGET}: condense "
        f"it or move evidence to {doc}_lab"
    )


def _cut_at_column(page) -> list[str]:
    """Tables and display equations wider than the text column: they scroll inside their
    box, so a reader at this width sees part of a row, a caption or a formula cut."""
    return page.evaluate(
        r"""() => {
            const out = [];
            const sel = ".bd-article table, .bd-article mjx-container[display='true'], "
                + ".bd-article div.math";
            for (const el of document.querySelectorAll(sel)) {
                if (el.scrollWidth > el.clientWidth + 1) {
                    const cap = el.querySelector("caption");
                    const text = cap ? cap.innerText : (el.getAttribute("aria-label") || "");
                    out.push(`<${el.tagName.toLowerCase()}> ${el.scrollWidth}px in `
                        + `${el.clientWidth}px: "${text.trim().slice(0, 60)}"`);
                }
            }
            return out;
        }"""
    )


@pytest.mark.parametrize("doc", [d for d in PAGES if d not in UNNUMBERED_TABLES_ALLOWED])
def test_tables_and_equations_fit_the_column_at_1280px(visit, doc):
    """At 1280 px no table, caption or display equation is cut: each fits the text column
    (split or pivot a wide table; break a long equation with ``aligned``)."""
    v = visit(f"{doc}.html", width=1280)
    v.page.wait_for_load_state("networkidle")
    v.page.evaluate("() => window.MathJax?.startup?.promise ?? null")  # typeset first
    cut = _cut_at_column(v.page)
    assert cut == [], f"{doc} at 1280px: wider than the column:\n" + "\n".join(cut)


@pytest.mark.parametrize("doc", [d for d in PAGES if d not in UNNUMBERED_TABLES_ALLOWED])
def test_captions_stay_in_view_on_a_phone(visit, doc):
    """At 400 px a wide table scrolls in its box; its caption stays within the visible box,
    so it is never cut (it was 400 px wide in a 368 px box)."""
    v = visit(f"{doc}.html", width=400)
    v.page.wait_for_load_state("networkidle")
    cut = v.page.evaluate(
        r"""() => {
            const out = [];
            for (const t of document.querySelectorAll(".bd-article table")) {
                const cap = t.querySelector("caption");
                if (!cap) continue;
                const box = (t.closest(".pst-scrollable-table-container") || t)
                    .getBoundingClientRect();
                const r = cap.getBoundingClientRect();
                if (r.right > box.right + 1 || r.left < box.left - 1)
                    out.push(`${Math.round(r.width)}px caption in a ${Math.round(box.width)}px `
                        + `box: "${cap.innerText.trim().slice(0, 50)}"`);
            }
            return out;
        }"""
    )
    assert cut == [], f"{doc} at 400px: captions cut:\n" + "\n".join(cut)
