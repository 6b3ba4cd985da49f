#!/usr/bin/env python3
"""Check the internal links of README.md, BENCHMARKS.md and docs/*.md.

Relative paths must exist; #anchors must match a heading of the target file
(GitHub's slugs: lowercase, spaces to '-', punctuation other than '-' and '_'
dropped, duplicates suffixed -1, -2, ...). External links (http:, https:,
mailto:) are not checked. Exits 1 and lists the broken links if any.

Usage: python3 docs/check_links.py   (from anywhere in the repository)
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
FENCE = re.compile(r'^\s*(```|~~~)')


def strip_code(text):
    """Drop fenced code blocks and inline code spans (links there are not links)."""
    out, fenced = [], False
    for line in text.split('\n'):
        if FENCE.match(line):
            fenced = not fenced
            out.append('')
            continue
        out.append('' if fenced else re.sub(r'`[^`]*`', '``', line))
    return out


def slug(heading):
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links keep their text
    text = re.sub(r'<[^>]+>', '', text).replace('`', '').lower()
    text = re.sub(r'[^\w\- ]', '', text)  # \w keeps letters, digits and '_'
    return text.replace(' ', '-')


def anchors(path):
    seen, result = {}, set()
    fenced = False
    for line in open(path, encoding='utf-8').read().split('\n'):
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            s = slug(m.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            result.add(s if n == 0 else f'{s}-{n}')
    return result


def main():
    files = [os.path.join(ROOT, f) for f in ('README.md', 'BENCHMARKS.md')]
    files += sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
    cache, broken, checked = {}, [], 0
    for src in files:
        if not os.path.exists(src):
            continue
        for lineno, line in enumerate(strip_code(open(src, encoding='utf-8').read()), 1):
            for target in LINK.findall(line):
                if re.match(r'^[a-z][a-z0-9+.-]*:', target):
                    continue  # http:, https:, mailto:
                checked += 1
                path, _, frag = target.partition('#')
                dest = os.path.normpath(os.path.join(os.path.dirname(src), path)) if path else src
                where = f'{os.path.relpath(src, ROOT)}:{lineno}: {target}'
                if not os.path.exists(dest):
                    broken.append(f'{where}: no such file')
                elif frag:
                    if not dest.endswith('.md'):
                        broken.append(f'{where}: an anchor into a file that is not Markdown')
                        continue
                    if dest not in cache:
                        cache[dest] = anchors(dest)
                    if frag not in cache[dest]:
                        broken.append(f'{where}: no heading with this anchor')
    for b in broken:
        print(b)
    print(f'{checked} internal links checked, {len(broken)} broken', file=sys.stderr)
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main())
