"""Real source files on this machine per language, for benchmarks; synthetic code where there are none.

Real files come from what a Debian + Python machine ships (the Python standard library, C and
C++ headers, the JDK's src.zip, Node's bundled npm). Go, Ruby and C# sources are usually absent:
for those (and any language with too few bytes) the corpus is a realistic template repeated with
fresh identifiers, and the result says so.
"""

from __future__ import annotations

import glob
import sysconfig
import zipfile
from pathlib import Path

TEMPLATES = {
    "Go": """package store{n}

import (
\t"errors"
\t"sort"
\t"sync"
)

// Item{n} is one entry of the store.
type Item{n} struct {{
\tKey   string
\tValue int
}}

// Store{n} keeps items in memory, guarded by a mutex.
type Store{n} struct {{
\tmu    sync.Mutex
\titems map[string]Item{n}
}}

var ErrMissing{n} = errors.New("missing key")

func NewStore{n}() *Store{n} {{
\treturn &Store{n}{{items: make(map[string]Item{n})}}
}}

// Put adds or replaces an item.
func (s *Store{n}) Put(key string, value int) {{
\ts.mu.Lock()
\tdefer s.mu.Unlock()
\ts.items[key] = Item{n}{{Key: key, Value: value}}
}}

func (s *Store{n}) Get(key string) (int, error) {{
\ts.mu.Lock()
\tdefer s.mu.Unlock()
\titem, ok := s.items[key]
\tif !ok {{
\t\treturn 0, ErrMissing{n}
\t}}
\treturn item.Value, nil
}}

func (s *Store{n}) Top(k int) []Item{n} {{
\ts.mu.Lock()
\tdefer s.mu.Unlock()
\tout := make([]Item{n}, 0, len(s.items))
\tfor _, item := range s.items {{
\t\tout = append(out, item)
\t}}
\tsort.Slice(out, func(i, j int) bool {{ return out[i].Value > out[j].Value }})
\tif len(out) > k {{
\t\tout = out[:k]
\t}}
\treturn out
}}
""",
    "Ruby": """# A small inventory model, number {n}.
module Shop{n}
  class Item
    attr_reader :name, :price, :quantity

    def initialize(name, price, quantity = 1)
      raise ArgumentError, "price must be positive" unless price.positive?
      @name = name
      @price = price
      @quantity = quantity
    end

    def total
      price * quantity
    end
  end

  class Cart
    include Enumerable

    def initialize
      @items = []
    end

    def add(item)
      existing = @items.find {{ |i| i.name == item.name }}
      if existing
        @items.delete(existing)
        item = Item.new(item.name, item.price, existing.quantity + item.quantity)
      end
      @items << item
      self
    end

    def each(&block)
      @items.each(&block)
    end

    # Sum of all items, with an optional discount in percent.
    def total(discount: 0)
      sum = @items.sum(&:total)
      (sum * (100 - discount) / 100.0).round(2)
    end
  end
end
""",
    "C#": """using System;
using System.Collections.Generic;
using System.Linq;

namespace Inventory{n}
{{
    /// <summary>One product line.</summary>
    public sealed class Item
    {{
        public string Name {{ get; }}
        public decimal Price {{ get; }}
        public int Quantity {{ get; private set; }}

        public Item(string name, decimal price, int quantity = 1)
        {{
            if (price <= 0) throw new ArgumentOutOfRangeException(nameof(price));
            Name = name ?? throw new ArgumentNullException(nameof(name));
            Price = price;
            Quantity = quantity;
        }}

        public void Add(int count) => Quantity += count;
        public decimal Total() => Price * Quantity;
    }}

    public class Cart{n}
    {{
        private readonly Dictionary<string, Item> _items = new();

        public void Add(Item item)
        {{
            if (_items.TryGetValue(item.Name, out var existing))
            {{
                existing.Add(item.Quantity);
                return;
            }}
            _items[item.Name] = item;
        }}

        // Sum of all items with an optional discount in percent.
        public decimal Total(int discount = 0)
        {{
            var sum = _items.Values.Sum(i => i.Total());
            for (var i = 0; i < discount; i++)
            {{
                sum -= sum / 100m;
            }}
            return Math.Round(sum, 2);
        }}
    }}
}}
""",
}


def _files(patterns: list[str]) -> list[Path]:
    seen: list[Path] = []
    for pattern in patterns:
        seen.extend(Path(p) for p in sorted(glob.glob(pattern, recursive=True)))
    return [p for p in seen if p.is_file()]


def _java_sources(max_bytes: int) -> list[bytes]:
    out, total = [], 0
    for src in [p for p in sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip")) if Path(p).is_file()]:
        with zipfile.ZipFile(src) as archive:
            for name in archive.namelist():
                if name.startswith("java.base/java/util/") and name.endswith(".java"):
                    data = archive.read(name)
                    out.append(data)
                    total += len(data)
                    if total >= max_bytes:
                        return out
        break
    return out


def real_sources(language: str, max_bytes: int) -> list[bytes]:
    """Up to `max_bytes` of real source files of `language` found on this machine."""
    stdlib = sysconfig.get_paths()["stdlib"]
    patterns = {
        "Python": [f"{stdlib}/*.py", f"{stdlib}/**/*.py"],
        "C": [f"{stdlib}/../../include/python3*/*.h", "/usr/include/*.h"],
        "C++": ["/usr/include/c++/*/bits/*.h", "/usr/include/c++/*/*"],
        "JavaScript": ["/usr/lib/node_modules/npm/**/*.js", "/usr/share/nodejs/**/*.js"],
        "Go": ["/usr/lib/go*/src/**/*.go"],
        "Ruby": ["/usr/lib/ruby/**/*.rb"],
        "C#": ["/usr/lib/mono/**/*.cs"],
    }
    if language == "Java":
        return _java_sources(max_bytes)
    out, total = [], 0
    for path in _files(patterns.get(language, [])):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if not data or b"\0" in data[:4096]:
            continue
        out.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return out


def synthetic_sources(language: str, max_bytes: int) -> list[bytes]:
    """A realistic template repeated with fresh identifiers (for languages without local files)."""
    template = TEMPLATES.get(language)
    if template is None:
        return []
    out, total, n = [], 0, 0
    while total < max_bytes:
        data = template.format(n=n).encode()
        out.append(data)
        total += len(data)
        n += 1
    return out


def sources(language: str, max_bytes: int, min_real_bytes: int = 200_000) -> tuple[list[bytes], str]:
    """(files, "real" or "synthetic") for a benchmark of `language`."""
    real = real_sources(language, max_bytes)
    if sum(map(len, real)) >= min(min_real_bytes, max_bytes):
        return real, "real"
    synthetic = synthetic_sources(language, max_bytes)
    return (synthetic, "synthetic") if synthetic else (real, "real")
