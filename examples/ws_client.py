"""A minimal AR client: connects to segstream's results server and prints what it receives.

    segstream run --output ws://127.0.0.1:8765?token=SECRET ...      # in one terminal
    python examples/ws_client.py ws://127.0.0.1:8765 --token SECRET  # in another

Each message is one frame's JSON record: frame number, timestamps, and per instance the track
id, label, score, box and mask (COCO RLE), plus the drivable-area polygons. Decode a mask with
``pipelines.masks.rle_decode`` (or pycocotools).
"""

from __future__ import annotations

import argparse
import json
import sys

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", default="ws://127.0.0.1:8765")
    ap.add_argument("--token", help="the server's token, if it has one")
    ap.add_argument("--count", type=int, default=0, help="stop after N messages (0: until the server closes)")
    a = ap.parse_args()
    headers = {"Authorization": f"Bearer {a.token}"} if a.token else None
    try:
        with connect(a.url, additional_headers=headers, max_size=16 << 20) as ws:
            n = 0
            for message in ws:
                rec = json.loads(message)
                inst = rec["results"].get("instances", [])
                sem = rec["results"].get("semantic", {})
                objs = ", ".join(f"#{i['track_id']} {i['label_name']} {i['score']:.2f}" for i in inst[:6])
                drivable = sem.get("drivable_share")
                print(
                    f"frame {rec['frame']}: age {rec['age_ms']:.0f} ms, {len(inst)} objects [{objs}]"
                    + (f", drivable {100 * drivable:.0f}%" if drivable is not None else "")
                )
                n += 1
                if a.count and n >= a.count:
                    break
    except InvalidStatus as exc:
        print(
            f"ws_client: the server refused the connection (HTTP {exc.response.status_code}); check --token",
            file=sys.stderr,
        )
        return 2
    except (ConnectionClosed, OSError) as exc:
        print(f"ws_client: connection ended: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
