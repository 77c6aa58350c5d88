"""Page extraction: metadata precedence, boilerplate removal, garbage input, URL normalising."""

from __future__ import annotations

import pytest

from memlayer.content.extract import ExtractedPage, extract_page, normalize_url

ARTICLE = """
<p>Spaced repetition schedules reviews of a memory just before it would be forgotten. Each
successful recall pushes the next review further out, so the effort per item falls over time
while retention stays high.</p>
<p>The forgetting curve, first measured by Hermann Ebbinghaus in 1885, shows that most new
material is lost within days unless it is revisited. Spacing the reviews flattens that curve.</p>
<p>Modern flashcard tools estimate the interval for every card from its past grades, which is
why a personal memory service can surface the right note at the right moment.</p>
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Plain title tag | Example Blog</title>
  <meta name="description" content="The plain meta description.">
  <meta property="og:title" content="Why spaced repetition works">
  <meta property="og:description" content="  A short tour of the
      forgetting curve.  ">
  <meta property="og:url" content="https://blog.example.com/og-url">
  <meta property="og:site_name" content="Example Blog">
  <link rel="stylesheet" href="/style.css">
  <link rel="canonical" href="/posts/spaced-repetition">
</head>
<body>
  <header><nav><ul>
    <li><a href="/">Home</a></li><li><a href="/archive">Archive of zebra posts</a></li>
    <li><a href="/subscribe">Subscribe to the quokka newsletter</a></li>
  </ul></nav></header>
  <main><article><h1>Why spaced repetition works</h1>{ARTICLE}</article></main>
  <aside class="sidebar advertisement"><p>Buy the platypus course, half off!</p></aside>
  <footer><p>Copyright 2024 Example Blog. Privacy policy. Terms of narwhal service.</p></footer>
</body>
</html>"""

URL = "https://blog.example.com/posts/spaced-repetition?utm_source=rss"


@pytest.fixture(scope="module")
def page() -> ExtractedPage:
    return extract_page(PAGE, URL)


def test_opengraph_metadata_wins(page: ExtractedPage) -> None:
    assert page.title == "Why spaced repetition works"
    assert page.description == "A short tour of the forgetting curve."  # whitespace collapsed
    assert page.site_name == "Example Blog"


def test_canonical_link_is_resolved_and_preferred_over_og_url(page: ExtractedPage) -> None:
    assert page.canonical_url == "https://blog.example.com/posts/spaced-repetition"


def test_main_text_kept_and_boilerplate_dropped(page: ExtractedPage) -> None:
    assert "forgetting curve, first measured by Hermann Ebbinghaus" in page.text
    assert "right note at the right moment" in page.text
    for boilerplate in ("zebra", "quokka", "platypus", "narwhal", "Copyright"):
        assert boilerplate not in page.text


def test_falls_back_to_title_tag_and_meta_description() -> None:
    html = """<html><head><title>  Plain   title </title>
      <meta name="description" content="Plain description.">
      <meta property="og:url" content="https://example.com/from-og"></head>
      <body><p>Some body text that is long enough to count as the main content here.</p>
      </body></html>"""
    page = extract_page(html, "https://example.com/page")
    assert page.title == "Plain title"
    assert page.description == "Plain description."
    assert page.canonical_url == "https://example.com/from-og"  # og:url when no canonical link
    assert page.site_name is None  # the host name is not a site name
    assert "long enough to count" in page.text


def test_canonical_respects_base_and_ignores_non_http_targets() -> None:
    html = """<html><head><base href="https://cdn.example.org/docs/">
      <link rel="canonical" href="guide.html"></head><body><p>x</p></body></html>"""
    assert extract_page(html, "https://example.org/").canonical_url == (
        "https://cdn.example.org/docs/guide.html"
    )
    html = """<html><head><link rel="canonical" href="javascript:alert(1)">
      <meta property="og:url" content="mailto:a@example.com"></head><body></body></html>"""
    assert extract_page(html, "https://example.org/p").canonical_url == "https://example.org/p"


def test_xhtml_with_xml_declaration() -> None:
    html = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>XHTML page</title></head>'
        "<body><p>Hello from an XHTML document with an XML declaration.</p></body></html>"
    )
    page = extract_page(html, "https://example.com/x")
    assert page.title == "XHTML page"
    assert "Hello from an XHTML document" in page.text


@pytest.mark.parametrize(
    "garbage",
    ["", "   \n\t", "\x00\x01\x02\x03", "<<<>>>", "<html>", "<div>" * 5000,
     "\ufffd\ufffd<p\x00>", "</body></html><!--"],
)  # fmt: skip
def test_garbage_input_does_not_raise(garbage: str) -> None:
    page = extract_page(garbage, "https://example.com/g")
    assert (page.title, page.description, page.site_name) == (None, None, None)
    assert page.canonical_url == "https://example.com/g"
    assert "\x00" not in page.text
    assert len(page.text) <= len(garbage.strip())


@pytest.mark.parametrize(
    "body",
    [
        "Just a plain text file.\n\nSecond paragraph, with 3 < 4 in it.",
        "# Notes\n\n- first item\n- second item\n",
        '{"title": "a JSON body", "items": [1, 2, 3]}',
    ],
)
def test_bodies_without_markup_are_the_text(body: str) -> None:
    page = extract_page(f"  {body}\n", "https://example.com/notes.txt")
    assert page.text == body.strip()
    assert page.title is None
    assert page.canonical_url == "https://example.com/notes.txt"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "HTTPS://Example.COM:443/Path/?utm_source=x&b=2&fbclid=y&a=%20+1&UTM_Medium=z#frag",
            "https://example.com/Path?b=2&a=%20+1",
        ),
        ("https://example.com/", "https://example.com"),
        ("https://example.com/?gclid=abc", "https://example.com"),
        ("http://Example.com:80/a/b/", "http://example.com/a/b"),
        ("http://example.com:8080/", "http://example.com:8080"),
        ("https://[2001:DB8::1]:443/x/", "https://[2001:db8::1]/x"),
        ("https://user:secret@example.com/x", "https://example.com/x"),
        ("https://example.com/search?q=a&q=b", "https://example.com/search?q=a&q=b"),
        ("  not a url  ", "not a url"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_normalize_url_makes_variants_equal() -> None:
    variants = [
        "https://www.example.com/article/42",
        "https://WWW.EXAMPLE.COM/article/42/",
        "https://www.example.com:443/article/42#comments",
        "https://www.example.com/article/42?utm_campaign=spring&fbclid=IwAR0",
    ]
    assert len({normalize_url(v) for v in variants}) == 1
