"""Lines of a text file with a bound on each, for the csv readers of files people hand
in (`mms replay`'s recharges, member imports): a line longer than the bound is read on
in pieces and never held whole (a wrong file, a binary, one huge line of an upload), and
stands as one placeholder line, its number in `too_long`, so the csv reader numbers every
later line as the file does."""

from __future__ import annotations


class BoundedLines:
    """An iterator of the lines of a text file opened with newline="" (what the csv
    module wants), each at most max_chars characters with its line end; a longer one is
    given as "\\0\\n" and its number (from 1) added to too_long."""

    PLACEHOLDER = "\0\n"

    def __init__(self, f, max_chars: int) -> None:
        self._f = f
        self.max_chars = int(max_chars)
        self.line = 0
        self.too_long: set[int] = set()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        text = self._f.readline(self.max_chars + 1)
        if not text:
            raise StopIteration
        self.line += 1
        if len(text) > self.max_chars:
            while text and text[-1] not in "\r\n":
                text = self._f.readline(self.max_chars)
            self.too_long.add(self.line)
            return self.PLACEHOLDER
        return text

    def any_too_long(self, first: int, last: int) -> bool:
        """Whether a line from first to last (a csv row's lines) was too long."""
        return any(first <= n <= last for n in self.too_long)
