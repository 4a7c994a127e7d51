"""Where a dotted key sits in a ds_config's text: line and column, for SARIF and annotations.

DeepSpeed reads configs with hjson (deepspeed/runtime/config.py: DeepSpeedConfig.__init__,
`hjson.load(open(config), object_pairs_hook=dict_raise_error_on_duplicate_keys)`), so a config
may carry `//`, `#` and `/* */` comments, single-quoted strings and unquoted keys, which a
plain regex over the text would trip on (a key named in a comment, a key of the same name in
another section). This walks the text once, tracking the object path, and records the
position of every key. Columns are 1-based Unicode code points.
"""
from __future__ import annotations

_STOP_BARE = set(",:[]{}\n\r")


def key_positions(text: str) -> dict[tuple[str, ...], tuple[int, int]]:
    """{('zero_optimization', 'stage'): (line, column), ...}; the first occurrence of each path."""
    out: dict[tuple[str, ...], tuple[int, int]] = {}
    stack: list[list] = []          # per open container: [kind, key or None]; kind 'o' / 'a'
    last: tuple[str, int] | None = None      # the last string/bare token and where it started
    i, n = 0, len(text)
    line, line_start = 1, 0

    def pos(index: int) -> tuple[int, int]:
        return line, index - line_start + 1

    while i < n:
        c = text[i]
        if c == "\n":
            line, line_start = line + 1, i + 1
            i += 1
        elif c in " \t\r\ufeff":
            i += 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            if "\n" in text[i:j]:
                line_start = text.rfind("\n", i, j) + 1
            i = j
        elif c in "\"'":
            start, j, buf = i, i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "\n":          # unterminated: stop at the line end
                    break
                buf.append(text[j])
                j += 1
            last = ("".join(buf), start)
            i = j + 1 if j < n and text[j] == c else j
        elif c in "{[":
            stack.append(["o" if c == "{" else "a", None])
            last = None
            i += 1
        elif c in "}]":
            if stack:
                stack.pop()
            last = None
            i += 1
        elif c == ":":
            if stack and stack[-1][0] == "o" and last is not None:
                stack[-1][1] = last[0]
                if all(k == "o" for k, _ in stack):
                    path = tuple(key for _, key in stack)
                    if path not in out:
                        out[path] = pos(last[1])
            last = None
            i += 1
        elif c == ",":
            last = None
            i += 1
        else:                                 # a number, literal, or hjson's unquoted key/value
            start = i
            while i < n and text[i] not in _STOP_BARE and not text.startswith("//", i) and text[i] != "#":
                i += 1
            last = (text[start:i].strip(), start)
    return out


def key_position(text: str | None, dotted: str) -> tuple[int, int, bool] | None:
    """(line, column, exact) of a dotted key; for a key the file does not have, the nearest
    parent that it does have (exact=False). None when nothing of the path is in the file."""
    if not text or not dotted:
        return None
    positions = key_positions(text)
    parts = tuple(dotted.split("."))
    for cut in range(len(parts), 0, -1):
        hit = positions.get(parts[:cut])
        if hit:
            return hit[0], hit[1], cut == len(parts)
    return None
