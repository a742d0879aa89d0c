#!/usr/bin/env python3
"""Checks that the docs stay true to the binary and to themselves (CTest `docs_commands`).

    tests/docs/check_commands.py ARCEUS_BINARY SOURCE_DIR

Reads README.md and docs/*.md under SOURCE_DIR and checks:

1. Commands. In every fenced code block labelled sh, bash, shell or console, or not labelled,
   and in every inline code span of the text, each invocation of arceus (`arceus`, `build/arceus`, `/opt/arceus/build/arceus`, also after
   `mpirun ...`, `srun ...` or `arceus run ... --`; `train.sbatch` and `serve.sbatch` stand
   for `arceus train` and `arceus serve`, which they pass their options to) names a subcommand that `ARCEUS_BINARY
   --help` lists, and every option written after the subcommand (`--long`, `-x`) appears in
   `ARCEUS_BINARY <subcommand> --help`. The options of a command end at `--` (what follows is
   another command), at another arceus, and in shell blocks at `|`, `;`, `&&`, `||`, `>` and
   `&`; unlabelled blocks are usage synopses, where `|` separates alternatives. A `#` comment
   ends a line. Lines that end with `\\`, and in unlabelled blocks indented lines that start
   with `[` or `-`, continue the line before.
2. Links. Every relative Markdown link or image in those files points at a file that exists,
   and a `#anchor` at a heading of the target Markdown file, by GitHub's slug rule (lower
   case, punctuation other than `-` and `_` dropped, spaces to `-`, `-1`, `-2`, ... for
   repeated headings).

Exits 0 when everything holds, 1 listing every problem as FILE:LINE: message, 2 on bad usage.
Python 3 standard library only.
"""
import glob
import os
import re
import shlex
import subprocess
import sys

SHELL_LANGS = {"sh", "bash", "shell", "console"}
STOP_SHELL = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"}
SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*$")
OPTION = re.compile(r"^(--[A-Za-z0-9][A-Za-z0-9_-]*|-[A-Za-z])(?=$|[=\]\),.|])")


def doc_files(root):
    files = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    return [f for f in files if os.path.isfile(f)]


def fence_of(line):
    m = re.match(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)", line)
    return (m.group(1), m.group(2).lower()) if m else None


def split_markdown(lines):
    """Yields ('code', lang, [(lineno, text)]) and ('text', None, [(lineno, text)]) blocks."""
    block, fence, lang = [], None, None
    for n, line in enumerate(lines, 1):
        f = fence_of(line)
        if fence is None and f:
            if block:
                yield ("text", None, block)
            block, fence, lang = [], f[0], f[1]
        elif fence is not None and line.strip().startswith(fence[0]) and line.strip().strip(fence[0][0]) == "":
            yield ("code", lang, block)
            block, fence, lang = [], None, None
        else:
            block.append((n, line))
    if block:
        yield ("code" if fence else "text", lang, block)


# --- 1. commands ----------------------------------------------------------------------------------

def logical_lines(block, shell):
    """Joins continuation lines; yields (first line number, text)."""
    out = []
    for n, line in block:
        if shell:
            line = re.sub(r"^\s*\$\s+", "", line)  # console prompt
        cont = out and (out[-1][1].endswith("\\") or
                        (not shell and re.match(r"^\s+[\[\-]", line) and "arceus" in out[-1][1]))
        if cont:
            prev_n, prev = out[-1]
            out[-1] = (prev_n, prev.rstrip("\\").rstrip() + " " + line.strip())
        else:
            out.append((n, line))
    return out


def tokens(text):
    try:
        lex = shlex.shlex(text, posix=True, punctuation_chars=False)
        lex.whitespace_split = True
        lex.commenters = "#"
        return list(lex)
    except ValueError:  # an unbalanced quote (prose in a synopsis): plain words, comment dropped
        return re.sub(r"(^|\s)#.*", "", text).split()


# Scripts that pass their arguments on to one subcommand (launcher/slurm/: `train.sbatch [CONFIG]
# [arceus train options...]`, `serve.sbatch [arceus serve options...]`).
PASS_ON = {"train.sbatch": "train", "serve.sbatch": "serve"}


def is_arceus(token):
    return token.rsplit("/", 1)[-1] == "arceus"


def invocations(text, shell):
    """(subcommand or None, [options]) for each arceus in one logical line."""
    toks = tokens(text)
    found = []
    for i, tok in enumerate(toks):
        script = PASS_ON.get(tok.rsplit("/", 1)[-1])
        if script:
            sub, start = script, i + 1
        elif not is_arceus(tok) or i + 1 >= len(toks):
            continue
        elif toks[i + 1].startswith("-"):
            if i > 0 and toks[i - 1].startswith("--"):
                continue  # `--arceus build/arceus --out ...`: the path is another program's argument
            sub, start = None, i + 1  # `arceus --help`: options of the program itself
        elif SUBCOMMAND.match(toks[i + 1]):
            sub, start = toks[i + 1], i + 2
            if start < len(toks) and SUBCOMMAND.match(toks[start]):
                sub += " " + toks[start]  # maybe a nested subcommand (`arceus config keys`): checked below
        else:
            continue  # `arceus plan:` in prose, `arceus's`, ...: not an invocation
        opts = []
        for t in toks[start:]:
            if t == "--" or is_arceus(t) or t.rsplit("/", 1)[-1] in PASS_ON or (shell and t in STOP_SHELL):
                break
            m = OPTION.match(t.lstrip("[("))
            if m:
                opts.append(m.group(1))
        found.append((sub, opts))
    return found


class Help:
    def __init__(self, binary):
        self.binary = binary
        self.cache = {}
        self.nested = {}
        self.subcommands = self.subcommands_in(self.run([]))
        if not self.subcommands:
            sys.exit(f"check_commands: `{binary} --help` lists no subcommands:\n{top}")

    @staticmethod
    def subcommands_in(text):
        found, section = set(), None
        for line in text.splitlines():
            if re.match(r"^\S.*:$", line):
                section = line
                continue
            m = re.match(r"^\s{1,6}([a-z][a-z0-9-]*)\s", line + " ")
            if section == "Subcommands:" and m:
                found.add(m.group(1))
        return found

    def resolve(self, sub):
        """`sub` ("config keys", "train configs/x.yaml") as the (sub)command it names."""
        if sub is None or " " not in sub:
            return sub
        first, second = sub.split(" ", 1)
        if first not in self.nested:
            self.nested[first] = self.subcommands_in(self.run([first])) if first in self.subcommands else set()
        return sub if second in self.nested[first] else first

    def run(self, args):
        env = dict(os.environ, ARCEUS_NO_BLAS_REEXEC="1")
        p = subprocess.run([self.binary] + args + ["--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, env=env, timeout=60)
        if p.returncode != 0:
            sys.exit(f"check_commands: `{self.binary} {' '.join(args + ['--help'])}` exited {p.returncode}:\n{p.stdout}")
        return p.stdout

    def options(self, sub):
        if sub not in self.cache:
            opts = set()
            for line in self.run(sub.split() if sub else []).splitlines():
                m = re.match(r"^\s{1,6}((?:-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*,?)+)", line)
                if m:
                    opts.update(o for o in m.group(1).split(",") if o)
            self.cache[sub] = opts
        return self.cache[sub]


def inline_commands(block):
    """(line number, text) of each inline code span of a text block that may name arceus."""
    text = "\n".join(line for _, line in block)
    starts = [n for n, _ in block]
    for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.S):
        if "arceus" in m.group(2) or "sbatch" in m.group(2):
            yield starts[text.count("\n", 0, m.start())], " ".join(m.group(2).split())


def check_commands(path, lines, help, problems, stats):
    for kind, lang, block in split_markdown(lines):
        if kind == "text":
            commands, shell = list(inline_commands(block)), False  # spans: as synopses
        elif lang and lang not in SHELL_LANGS:
            continue
        else:
            shell = bool(lang)
            commands = logical_lines(block, shell)
        for n, text in commands:
            for sub, opts in invocations(text, shell):
                stats["invocations"] += 1
                if sub is not None and sub.split(" ")[0] not in help.subcommands:
                    sub = sub.split(" ")[0]
                    problems.append(f"{path}:{n}: `arceus {sub}`: no such subcommand "
                                    f"(arceus --help lists {', '.join(sorted(help.subcommands))})")
                    continue
                sub = help.resolve(sub)
                known = help.options(sub)
                for o in opts:
                    stats["options"] += 1
                    if o not in known:
                        name = f"arceus {sub}" if sub else "arceus"
                        problems.append(f"{path}:{n}: `{name} {o}`: `{name} --help` has no option {o} "
                                        f"(it has {', '.join(sorted(known))})")


# --- 2. links -------------------------------------------------------------------------------------

def slug(heading):
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    t = re.sub(r"<[^>]+>", "", t).replace("`", "")
    t = re.sub(r"(\*\*|__|\*)", "", t)
    t = t.strip().lower()
    t = re.sub(r"[^\w\- ]", "", t)
    return t.replace(" ", "-")


def anchors(lines):
    seen, out = {}, set()
    for kind, _, block in split_markdown(lines):
        if kind != "text":
            continue
        for _, line in block:
            m = re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
            if not m:
                continue
            s = slug(m.group(1))
            k = seen.get(s, 0)
            seen[s] = k + 1
            out.add(s if k == 0 else f"{s}-{k}")
    return out


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def check_links(path, lines, problems, stats, anchor_cache):
    here = os.path.dirname(path)
    for kind, _, block in split_markdown(lines):
        if kind != "text":
            continue
        for n, line in block:
            line = re.sub(r"(`+).*?\1", "", line)  # inline code is not a link
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
                    continue  # http:, mailto:, absolute paths: not checked
                stats["links"] += 1
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(here, file_part)) if file_part else path
                if not os.path.exists(dest):
                    problems.append(f"{path}:{n}: link {target}: {os.path.relpath(dest)} does not exist")
                    continue
                if not anchor:
                    continue
                if not dest.endswith(".md") or os.path.isdir(dest):
                    problems.append(f"{path}:{n}: link {target}: an anchor into a file that is not Markdown")
                    continue
                if dest not in anchor_cache:
                    with open(dest, encoding="utf-8") as f:
                        anchor_cache[dest] = anchors(f.read().split("\n"))
                if anchor not in anchor_cache[dest]:
                    near = sorted(a for a in anchor_cache[dest] if a[:6] == anchor[:6])
                    problems.append(f"{path}:{n}: link {target}: {os.path.relpath(dest)} has no heading "
                                    f"#{anchor}" + (f" (similar: {', '.join('#' + a for a in near)})" if near else ""))


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    binary, root = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    if not os.access(binary, os.X_OK):
        print(f"check_commands: {binary} is not an executable", file=sys.stderr)
        return 2
    files = doc_files(root)
    if not files:
        print(f"check_commands: no README.md or docs/*.md under {root}", file=sys.stderr)
        return 2
    help = Help(binary)
    problems, stats, anchor_cache = [], {"invocations": 0, "options": 0, "links": 0}, {}
    os.chdir(root)  # problems name files relative to the source tree
    for path in files:
        rel = os.path.relpath(path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        check_commands(rel, lines, help, problems, stats)
        check_links(rel, lines, problems, stats, anchor_cache)
    print(f"check_commands: {len(files)} files; {stats['invocations']} arceus invocations with "
          f"{stats['options']} options checked against --help of {len(help.cache)} (sub)commands; "
          f"{stats['links']} relative links")
    for p in problems:
        print(p)
    if problems:
        print(f"check_commands: {len(problems)} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
