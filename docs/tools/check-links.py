#!/usr/bin/env python3
"""Checks every link inside the built book (docs/book): each relative href/src names a file that
exists in the book, and each #fragment an element id of that page. Links to other sites are not
followed (the test machines have no network); a link that leaves the book (into the repository)
is broken, since the published book does not carry the repository.

    python3 docs/tools/check-links.py docs/book [README.md ...]

Markdown files given after the book (the README, read on the forge) have their relative links
checked against the repository: each must name a file that exists.

Exit status 1 with one line per broken link.
"""
import re
import os
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None and tag in ("a", "img", "link", "script"):
                self.links.append(value)


def main(root, markdown=()):
    root = os.path.abspath(root)
    pages = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".html"):
                p = Page()
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    p.feed(fh.read())
                pages[os.path.join(d, f)] = p
    broken = []
    checked = 0
    for path, page in sorted(pages.items()):
        for link in page.links:
            if link.startswith(("http://", "https://", "mailto:", "javascript:", "data:")) or link == "":
                continue
            url, frag = urldefrag(link)
            target = path if url == "" else os.path.normpath(os.path.join(os.path.dirname(path), unquote(url)))
            if os.path.isdir(target):
                target = os.path.join(target, "index.html")
            rel = os.path.relpath(path, root)
            checked += 1
            if not target.startswith(root + os.sep):
                broken.append(f"{rel}: {link} leaves the book")
            elif not os.path.exists(target):
                broken.append(f"{rel}: {link} names no file of the book")
            elif frag and target.endswith(".html") and frag not in pages[target].ids:
                broken.append(f"{rel}: {link} names no id of {os.path.relpath(target, root)}")
    for md in markdown:
        with open(md, encoding="utf-8") as fh:
            text = re.sub(r"```.*?```", "", fh.read(), flags=re.S)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if link.startswith(("http://", "https://", "mailto:", "#")):
                continue
            checked += 1
            target = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(md)), unquote(urldefrag(link)[0])))
            if not os.path.exists(target):
                broken.append(f"{md}: {link} names no file of the repository")
    for b in broken:
        print(b)
    print(f"links: {checked} checked in {len(pages)} pages and {len(markdown)} Markdown files, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/book", sys.argv[2:]))
