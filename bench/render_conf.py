#!/usr/bin/env python3
"""Render an nginx config template: replace @NAME@ placeholders.

usage: render_conf.py TEMPLATE OUT NAME=VALUE... [NAME=@file:PATH]...

A value written as @file:PATH is the content of PATH escaped for an nginx
single-quoted string (so it can follow `return 200`). Stdlib only.
"""
import re
import sys


def nginx_quote_body(text: str) -> str:
    if "$" in text:
        # `return` text is a complex value: `$name` would be read as a variable.
        raise SystemExit("fixture contains '$', which nginx would expand as a variable")
    return text.replace("\\", "\\\\").replace("'", "\\'")


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    template, out = sys.argv[1], sys.argv[2]
    values = {}
    for arg in sys.argv[3:]:
        name, _, value = arg.partition("=")
        if value.startswith("@file:"):
            with open(value[len("@file:"):], encoding="utf-8") as f:
                value = nginx_quote_body(f.read())
        values[name] = value
    with open(template, encoding="utf-8") as f:
        text = f.read()

    def sub(m: "re.Match[str]") -> str:
        key = m.group(1)
        if key not in values:
            raise SystemExit(f"{template}: no value given for @{key}@")
        return values[key]

    text = re.sub(r"@([A-Z_]+)@", sub, text)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
