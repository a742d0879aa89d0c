#!/usr/bin/env python3
"""docs/configuration.md's table of keys is `arceus config keys --markdown`, the one description
of the keys (config/fields.h): this test fails when they differ, showing the difference.

    python3 tests/docs/check_config_keys.py ARCEUS_BIN SOURCE_DIR [--write]

--write puts the binary's table into the page (between the config-keys markers).
"""
import difflib
import pathlib
import subprocess
import sys

BEGIN, END = "<!-- config-keys:begin -->", "<!-- config-keys:end -->"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    binary, source = args
    page = pathlib.Path(source) / "docs" / "configuration.md"
    table = subprocess.run([binary, "config", "keys", "--markdown"], check=True, capture_output=True,
                           text=True).stdout
    text = page.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{page}: no {BEGIN} ... {END} block (the generated table goes between them)")
    head, rest = text.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    wanted = "\n" + table
    if "--write" in sys.argv:
        page.write_text(head + BEGIN + wanted + END + tail)
        print(f"{page}: table written ({table.count(chr(10)) - 2} keys)")
        return
    if current != wanted:
        diff = difflib.unified_diff(current.splitlines(), wanted.splitlines(), "docs/configuration.md",
                                    "arceus config keys --markdown", lineterm="")
        print("\n".join(diff))
        sys.exit("docs/configuration.md's table differs from the keys' description (config/fields.h); regenerate it: "
                 f"python3 tests/docs/check_config_keys.py {binary} {source} --write")
    print(f"docs/configuration.md: {table.count(chr(10)) - 2} keys, as config/fields.h describes them")


if __name__ == "__main__":
    main()
