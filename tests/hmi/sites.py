"""Generated sites for tests that need more rooms than the demo site."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_site"]


def write_site(path: Path, rooms: int, *, per_floor: int = 50, buildings: int = 1, links: int = 1) -> Path:
    """A site TOML of ``rooms`` rooms (one electricity meter each) spread over buildings and
    floors; meters on links ``gw-1``.. ``gw-<links>``, unit ids 1-200 on each."""
    out = ['[site]\nid = "gen"\nname = "Generated"\ntimezone = "Asia/Shanghai"\n']
    per_building = -(-rooms // buildings)
    n = 0
    for b in range(1, buildings + 1):
        out.append(f'[[buildings]]\nid = "G{b}"\nname = "Block {b}"\n')
        floors = -(-min(per_building, rooms - n) // per_floor)
        for f in range(1, floors + 1):
            out.append(f'[[floors]]\nid = "G{b}-F{f}"\nbuilding = "G{b}"\nlevel = {f}\nname = "F{f}"\n')
            for r in range(1, per_floor + 1):
                if n >= rooms or r > per_building:
                    break
                room = f"G{b}-R{f}{r:02d}"
                out.append(f'[[rooms]]\nid = "{room}"\nfloor = "G{b}-F{f}"\nname = "{f}{r:02d}"\n')
                out.append(
                    f'[[meters]]\nid = "E-{room}"\nkind = "electricity"\nroom = "{room}"\nprofile = "acrel-ddsy1352"\n'
                    f'link = "gw-{n // 200 % links + 1}"\nunit_id = {n % 200 + 1}\n'
                )
                n += 1
    path.write_text("\n".join(out), encoding="utf-8")
    return path
