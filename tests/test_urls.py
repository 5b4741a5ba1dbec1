"""Every link to the project points at its home, `project_urls` in setup.cfg.

The README's badges and links, the docs, the notebooks' Colab badges and
install cells and the changelog must agree with the one place that names the
project's home: a link to another owner's repository of the same name sends
users to a different project (issue 14). Links to other projects (keras-team,
fastai, arXiv, ...) are references and are left alone: only GitHub URLs whose
owner or repository contains "kbatch", and every Colab URL that opens a
notebook from GitHub, are checked.
"""

import configparser
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"
FILES = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md",
     *(ROOT / "docs").rglob("*.md"), *(ROOT / "notebooks").glob("*.ipynb")])

# github.com/<owner>/<repo>, raw.githubusercontent.com/<owner>/<repo> and
# colab.research.google.com/github/<owner>/<repo>, with or without a scheme;
# the rest of the URL stops at what ends a link in Markdown, JSON or BibTeX.
_NAME = r"[A-Za-z0-9_.-]+"
REPOSITORY_URL = re.compile(
    r"(?<![\w.-])(?:https?://)?(?:www\.)?"
    r"(?P<host>github\.com|raw\.githubusercontent\.com|colab\.research\.google\.com/github)"
    rf"/(?P<owner>{_NAME})/(?P<repo>{_NAME})(?P<rest>/[^\s\"'<>()\[\]{{}}\\`]*)?",
    re.IGNORECASE)


def project_home(setup_cfg: pathlib.Path) -> str:
    """The `Homepage` entry of `project_urls` in `setup.cfg`."""
    urls = project_urls(setup_cfg)
    assert "Homepage" in urls, f"{setup_cfg}: no Homepage in [metadata] project_urls"
    return urls["Homepage"]


def project_urls(setup_cfg: pathlib.Path) -> dict:
    config = configparser.ConfigParser(interpolation=None)
    config.read(setup_cfg, encoding="utf-8")
    lines = config.get("metadata", "project_urls", fallback="").strip().splitlines()
    return {key.strip(): value.strip() for key, _, value in
            (line.partition("=") for line in lines) if value}


def owner_and_repo(home: str) -> tuple[str, str]:
    match = REPOSITORY_URL.fullmatch(home.rstrip("/"))
    assert match and match["host"].lower() == "github.com" and not match["rest"], (
        f"the home URL should be https://github.com/<owner>/<repo>; got {home!r}")
    return match["owner"], match["repo"]


def repository_links(text: str):
    """(url, owner, repo, rest) of every link that points at a repository of
    this project's name, or opens a notebook from GitHub in Colab."""
    for match in REPOSITORY_URL.finditer(text):
        url = match[0].rstrip(".,;:")
        owner = match["owner"]
        repo = match["repo"].rstrip(".,;:").removesuffix(".git")
        rest = (match["rest"] or "").rstrip(".,;:")
        if match["host"].lower().startswith("colab") or "kbatch" in (
                f"{owner}/{repo}".lower()):
            yield url, owner, repo, rest


def _is_home(owner: str, repo: str, home: str) -> bool:
    return (owner.lower(), repo.lower()) == tuple(
        part.lower() for part in owner_and_repo(home))


def foreign_links(text: str, home: str) -> list[str]:
    """The links of `repository_links` that point elsewhere than `home`."""
    return [url for url, owner, repo, _ in repository_links(text)
            if not _is_home(owner, repo, home)]


def missing_targets(text: str, home: str, root: pathlib.Path) -> list[str]:
    """Links to a file or folder on the home repository's `main` branch that
    does not exist in this checkout."""
    missing = []
    for url, owner, repo, rest in repository_links(text):
        # /blob/main/<path>, /tree/main/<path> (GitHub, Colab), /main/<path> (raw)
        path = re.fullmatch(r"/(?:blob/|tree/)?main/(.+)",
                            re.split(r"[#?]", rest)[0].rstrip("/"))
        if _is_home(owner, repo, home) and path and not (root / path[1]).exists():
            missing.append(url)
    return missing


@pytest.fixture(scope="module")
def home():
    return project_home(SETUP_CFG)


def test_setup_cfg_names_a_github_home_and_the_other_urls_live_under_it(home):
    _, repo = owner_and_repo(home)
    assert "kbatch" in repo
    for name, url in project_urls(SETUP_CFG).items():
        assert url.startswith(home), (name, url)


def test_there_are_files_to_check():
    names = {path.name for path in FILES}
    assert {"README.md", "CHANGELOG.md", "claims.md"} <= names
    assert sum(path.suffix == ".ipynb" for path in FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_every_link_to_the_project_points_at_its_home(path, home):
    text = path.read_text(encoding="utf-8")
    foreign = foreign_links(text, home)
    assert not foreign, (f"{path.relative_to(ROOT)} links to another repository "
                         f"than {home} (setup.cfg project_urls): {foreign}")
    missing = missing_targets(text, home, ROOT)
    assert not missing, (f"{path.relative_to(ROOT)} links to files that do not "
                         f"exist in this checkout: {missing}")


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".ipynb"],
                         ids=lambda p: p.name)
def test_every_notebook_has_a_colab_badge_that_opens_itself(path):
    text = path.read_text(encoding="utf-8")
    colab = [rest for url, _, _, rest in repository_links(text)
             if url.startswith("https://colab.")]
    assert colab, f"{path.name} has no Open-in-Colab link"
    assert set(colab) == {f"/blob/main/notebooks/{path.name}"}


def test_the_readme_links_every_notebook_in_colab(home):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        assert (f"https://colab.research.google.com/github/{'/'.join(owner_and_repo(home))}"
                f"/blob/main/notebooks/{path.name}") in readme


HOME = "https://github.com/keras-kbatch/keras-kbatch"


@pytest.mark.parametrize("url", [
    "https://github.com/example-org/kbatch",
    "git+https://github.com/example-org/kbatch.git",
    "https://colab.research.google.com/github/example-org/kbatch/blob/main/notebooks/01.ipynb",
    "https://colab.research.google.com/github/someone/fork/blob/main/notebooks/01.ipynb",
    "https://raw.githubusercontent.com/someone/keras-kbatch/main/docs/images/advice.png",
    "github.com/keras-kbatch/kbatch",
    "https://github.com/kbatch/keras-kbatch/issues",
])
def test_a_link_to_another_repository_is_caught(url):
    for text in (f"[x]({url})", f'"{url}",\n', f"url = {{{url}}}", f"see {url}."):
        [found] = foreign_links(text, HOME)
        assert url.endswith(found) and found.endswith(url.split("/")[-1]), text


@pytest.mark.parametrize("text", [
    f"[home]({HOME}) and [docs]({HOME}/tree/main/docs)",
    f"{HOME.upper()}/issues",
    f"see {HOME}.",
    "https://github.com/keras-team/keras/blob/master/keras/src/callbacks/",
    "https://github.com/fastai/fastai and https://arxiv.org/abs/1506.01186",
    "https://github.com/keras-kbatch",  # the organisation, not a repository
    "https://colab.research.google.com/assets/colab-badge.svg",
])
def test_the_home_and_references_to_other_projects_pass(text):
    assert foreign_links(text, HOME) == []


def test_a_link_to_a_file_that_does_not_exist_is_caught():
    raw = "https://raw.githubusercontent.com/keras-kbatch/keras-kbatch/main"
    typo = f"{HOME}/blob/main/docs/nope.md#anchor"
    text = (f"[ok]({HOME}/blob/main/README.md) [ok]({HOME}/tree/main/docs/) "
            f"![ok]({raw}/docs/images/advice.png) [typo]({typo})")
    assert missing_targets(text, HOME, ROOT) == [typo]
