#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""docs/errors.md's command-line table, row by row (python3 standard library only).

Every row `| program | arguments | message excerpt |` between the cli-rows markers is run: the
program must exit with a non-zero status (not a timeout) and print a message that contains the
excerpt, the option and the value. Every option of every subcommand (read from the program's own
--help) must have a row, or a row in the table of options checked only when used (between the
cli-unchecked markers); a row there for an option the program does not have fails too.

  cli_errors.py --doc docs/errors.md --program ddpm-toy2d=PATH ...          check
  cli_errors.py --doc docs/errors.md --program ddpm-toy2d=PATH ... --write  print candidate rows
  cli_errors.py --doc docs/errors.md --program ddpm-toy2d=PATH ... --update rewrite, in the doc,
      the message of each row whose excerpt the program no longer prints (review the diff)
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

TOP = "(none)"  # the command column of a program's own options (no subcommand)
TIMEOUT = 30  # seconds; a row's program exits during option parsing or its first file read


def table(doc, name, columns, required=True):
    """The rows between <!-- NAME:begin --> and <!-- NAME:end -->, as lists of cells (none
    only where not `required`)."""
    rows, inside = [], False
    for line in open(doc, encoding="utf-8"):
        if f"<!-- {name}:begin -->" in line:
            inside = True
        elif f"<!-- {name}:end -->" in line:
            inside = False
        elif inside and line.startswith("| `"):
            cells = table_cells(line)
            if len(cells) != columns:
                raise SystemExit(f"{doc}: a {name} row needs {columns} cells: {line.strip()}")
            rows.append(cells)
    if not rows and required:
        raise SystemExit(f"{doc}: no rows between the {name} markers")
    return rows


def run(args, cwd):
    try:
        p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, p.stderr + p.stdout


def help_options(path, cwd):
    """{command: {option: help type}} of a program: its subcommands' options and positionals."""
    _, top = run([path, "--help"], cwd)
    commands = [TOP]
    section = None
    for line in top.splitlines():
        if line.startswith("Subcommands:"):
            section = "sub"
        elif section == "sub" and re.match(r"^  \S", line):
            commands.append(line.split()[0])
    out = {}
    for command in commands:
        _, text = run([path] + ([] if command == TOP else [command]) + ["--help"], cwd)
        if command == TOP:
            text = text.split("Subcommands:")[0]
        options = {}
        section = None
        for line in text.splitlines():
            if line.startswith("Options:"):
                section = "options"
            elif line.startswith("Positionals:"):
                section = "positionals"
            elif re.match(r"^  \S", line) and section:
                head = re.split(r"\s{2,}", line.strip())[0]  # name and type, not the help
                name = head.split()[0].split(",")[-1]
                if name in ("--help", "-h"):
                    continue
                kind = head[len(head.split()[0]):].strip()
                kind = "FLAG" if not re.match(r"^[A-Z]", kind) or kind.startswith(
                    ("Excludes", "Needs")) else kind
                options[name] = kind
        if options or command != TOP:
            out[command] = options
    return out


def command_of(arguments):
    """The row's command: its first word, or TOP for the program's own options."""
    first = arguments.split()[0]
    return TOP if re.match(r"^--?[A-Za-z]", first) else first


def option_of(arguments):
    """The option a row exercises: its last option token (--name or --name=value), else the
    positional the command refused."""
    tokens = arguments.split()
    named = [t for t in tokens if re.match(r"^--?[A-Za-z]", t)]  # not a value such as -1
    if named:
        option = named[-1].split("=")[0]
        rest = tokens[tokens.index(named[-1]) + 1:]
        value = named[-1].split("=", 1)[1] if "=" in named[-1] else (rest[0] if rest else "")
        return option, value
    return None, tokens[-1] if len(tokens) > 1 else ""


def candidate(kind):
    """An invalid value for an option of help type `kind`, or None (any text is accepted)."""
    m = re.search(r":(-?\d+)\.\.", kind)  # the programs' integer_range, seed and thread checks
    if m:
        return str(int(m.group(1)) - 1)
    m = re.search(r"in \[(-?[\d.e+]+) - (-?[\d.e+]+)\]", kind)
    if m:
        return str(int(float(m.group(1))) - 1) if kind.startswith(("INT", "UINT")) else "2"
    m = re.search(r":\[(-?[\d.e+]+), (-?[\d.e+]+)\]", kind)
    if m:
        return f"{float(m.group(2)) + 1:g}"
    if ":{" in kind:
        return "bogus"
    if "POSITIVE" in kind:
        return "0"
    if "NONNEGATIVE" in kind:
        return "-1"
    if "FINITE" in kind:
        return "nan"
    if ":FILE" in kind or ":PATH" in kind:
        return "/nonexistent/file"
    if kind.startswith(("INT", "UINT", "FLOAT", "BOOLEAN")):
        return "abc"
    if kind == "FLAG":
        return "=bogus"
    if kind.startswith("TEXT"):
        return "/nonexistent/file"  # kept only where the program refuses it at once
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--doc", required=True)
    parser.add_argument("--program", action="append", default=[], help="NAME=PATH")
    parser.add_argument("--write", action="store_true", help="print candidate rows and exit")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the stale messages of the doc's rows and exit")
    args = parser.parse_args()
    programs = dict(p.split("=", 1) for p in args.program)
    with tempfile.TemporaryDirectory(prefix="ddpm-cli-errors-") as work:
        return check_all(args, programs, work)


def first_line(output, code):
    """A row's message: the output's first line, without the machine's thread counts."""
    first = output.strip().splitlines()[0] if output.strip() else f"(exit {code})"
    first = re.sub(r"(allowed: 1\.\.)\d+ \(at most 4 x .*", r"\1", first)  # per machine
    return first.replace("|", "\\|")


def update(args, programs, work):
    """Rewrites the message cell of every cli-rows row whose excerpt is no longer printed."""
    lines = open(args.doc, encoding="utf-8").read().split("\n")
    inside, jobs = False, []
    for i, line in enumerate(lines):
        if "<!-- cli-rows:begin -->" in line:
            inside = True
        elif "<!-- cli-rows:end -->" in line:
            inside = False
        elif inside and line.startswith("| `"):
            name, arguments = table_cells(line)[:2]
            if name in programs:
                jobs.append((i, name, arguments, line))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda j: run([programs[j[1]]] + j[2].split(), work), jobs))
    changed = 0
    for (i, name, arguments, line), (code, output) in zip(jobs, results):
        excerpt = table_cells(line)[2]
        if excerpt in output:
            continue
        lines[i] = f"| `{name}` | `{arguments}` | `{first_line(output, code)}` |"
        changed += 1
    open(args.doc, "w", encoding="utf-8").write("\n".join(lines))
    print(f"{changed} of {len(jobs)} rows rewritten in {args.doc}")
    return 0


def table_cells(line):
    """The cells of a table row, as table() reads them."""
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    cells = [c[1:-1] if len(c) >= 2 and c[0] == "`" and c[-1] == "`" else c for c in cells]
    return [c.replace("\\|", "|") for c in cells]


def check_all(args, programs, work):
    if args.update:
        return update(args, programs, work)
    helps = {name: help_options(path, work) for name, path in programs.items()}

    if args.write:
        jobs = []
        for name, commands in helps.items():
            for command, options in commands.items():
                for option, kind in options.items():
                    value = None if option == "--out" else candidate(kind)
                    if value is None:
                        print(f"| `{name}` | `{command}` | `{option}` | TODO |", file=sys.stderr)
                        continue
                    prefix = "" if command == TOP else command + " "
                    if option.startswith("-"):
                        arguments = f"{prefix}{option}{value}" if value.startswith("=") \
                            else f"{prefix}{option} {value}"
                    else:
                        arguments = f"{prefix}{value}"
                    jobs.append((name, arguments))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda j: run([programs[j[0]]] + j[1].split(), work), jobs))
        for (name, arguments), (code, output) in zip(jobs, results):
            option, value = option_of(arguments)
            if code in (None, 0) or (option and option.lstrip("-") not in output) or \
                    value.lstrip("=") not in output:
                command = command_of(arguments)
                print(f"| `{name}` | `{command}` | `{option}` | TODO: {first_line(output, code)} |",
                      file=sys.stderr)
                continue
            print(f"| `{name}` | `{arguments}` | `{first_line(output, code)}` |")
        return 0

    rows = [r for r in table(args.doc, "cli-rows", 3) if r[0] in programs]
    unchecked = [r for r in table(args.doc, "cli-unchecked", 4, required=False)
                 if r[0] in programs]
    failures = []
    missing = set(programs) - {r[0] for r in rows}
    if missing:
        failures.append(f"no rows for {sorted(missing)}")

    def check(row):
        name, arguments, excerpt = row
        code, output = run([programs[name]] + arguments.split(), work)
        option, value = option_of(arguments)
        problems = []
        if code is None:
            problems.append(f"still running after {TIMEOUT} s (the argument was accepted)")
        elif code == 0:
            problems.append("exit status 0")
        if excerpt not in output:
            problems.append(f"message lacks the excerpt '{excerpt}'")
        # A file option's message may name it as the library does ("checkpoint '...' cannot be
        # opened"): the name without its dashes.
        if option and option.lstrip("-") not in output:
            problems.append(f"message does not name {option}")
        if value and value.lstrip("=") not in output:
            problems.append(f"message does not name the value '{value}'")
        return [f"{name} {arguments}: {p}\n    output: {output.strip()[:400]}" for p in problems]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for problems in pool.map(check, rows):
            failures.extend(problems)

    # Both directions: every option has a row, every row an option.
    covered = set()
    for name, arguments, _ in rows:
        command = command_of(arguments)
        option, _ = option_of(arguments)
        covered.add((name, command, option if option else "<positional>"))
    for name, command, option, _ in unchecked:
        if option not in helps[name].get(command, {}):
            failures.append(f"unchecked-table row {name} {command} {option}: no such option")
        covered.add((name, command, option))
    for name, commands in helps.items():
        for command, options in commands.items():
            for option in options:
                key = option if option.startswith("-") else "<positional>"
                if (name, command, key) not in covered and (name, command, option) not in covered:
                    failures.append(f"{name} {command} {option}: no row in {args.doc}")
    for failure in failures:
        print("FAIL:", failure)
    print(f"{len(rows)} rows run, {len(unchecked)} options checked when used, "
          f"{sum(len(o) for c in helps.values() for o in c.values())} options in the programs' "
          f"--help, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
