#!/usr/bin/env python3
"""Summarise a bench/run.sh results directory as markdown (stdlib only).

usage: summarize.py RESULTS_DIR

Reads RESULTS_DIR/env.json, RESULTS_DIR/{runs,streams}/*.meta.json and the oha
--output-format json output next to each (same name without .meta). oha fields used:
  summary.requestsPerSec, summary.total (s), summary.average (s), summary.successRate,
  latencyPercentiles.p50 / .p99 (s), statusCodeDistribution {"200": n},
  errorDistribution {"message": n}.
"""
import glob
import json
import os
import statistics
import sys

CONFIG_LABEL = {
    "direct": "A: direct",
    "nginx": "B: nginx proxy_pass",
    "switchyard": "C: switchyard",
}
CONFIG_ORDER = ["direct", "nginx", "switchyard"]
MODE_ORDER = ["plain", "stream", "slowstream"]


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Run:
    """One oha run plus the /proc measurements taken around it."""

    def __init__(self, meta, oha):
        self.meta = meta
        self.oha = oha or {}
        self.config = meta["config"]
        self.mode = meta["mode"]
        self.kind = meta["kind"]
        self.run = meta["run"]
        summary = self.oha.get("summary") or {}
        pct = self.oha.get("latencyPercentiles") or {}
        self.ok = bool(self.oha) and meta.get("oha_exit", 1) == 0
        self.rps = summary.get("requestsPerSec")
        self.total_s = summary.get("total")
        self.average_s = summary.get("average")
        self.p50 = pct.get("p50")
        self.p99 = pct.get("p99")
        self.status = {str(k): int(v) for k, v in (self.oha.get("statusCodeDistribution") or {}).items()}
        self.errors = {str(k): int(v) for k, v in (self.oha.get("errorDistribution") or {}).items()}
        self.responses = sum(self.status.values())
        self.count = self.responses + sum(self.errors.values())
        self.ok_2xx = sum(v for k, v in self.status.items() if k.startswith("2"))
        self.non_2xx = self.responses - self.ok_2xx
        self.n_errors = sum(self.errors.values())

    def cpu_us_per_req(self, which="gateway"):
        ticks = self.meta.get(f"{which}_cpu_ticks")
        if not ticks or not self.meta.get(f"{which}_pids") or self.count == 0:
            return None
        return (ticks[1] - ticks[0]) / self.meta["clk_tck"] * 1e6 / self.count


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ms(v, digits=3):
    return "–" if v is None else f"{v * 1000:.{digits}f}"


def num(v, fmt="{:.0f}"):
    return "–" if v is None else fmt.format(v)


def mib(kb):
    return "–" if not kb else f"{kb / 1024:.1f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def failures(runs):
    """'n' for non-2xx + transport errors, summed over runs."""
    return sum(r.non_2xx + r.n_errors for r in runs)


def sort_key(item):
    config, mode = item[0], item[1]
    return (CONFIG_ORDER.index(config) if config in CONFIG_ORDER else 9,
            MODE_ORDER.index(mode) if mode in MODE_ORDER else 9) + tuple(item[2:])


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    env = load_json(os.path.join(root, "env.json")) or {}
    runs = []
    for meta_path in sorted(glob.glob(os.path.join(root, "runs", "*.meta.json"))
                            + glob.glob(os.path.join(root, "streams", "*.meta.json"))):
        meta = load_json(meta_path)
        if meta is None:
            continue
        runs.append(Run(meta, load_json(meta_path[: -len(".meta.json")] + ".json")))

    groups = {}
    for r in runs:
        groups.setdefault((r.config, r.mode, r.kind), []).append(r)
    for g in groups.values():
        g.sort(key=lambda r: r.run)

    out = []
    out.append(f"### Switchyard load benchmark — {env.get('timestamp', os.path.basename(root))}")
    out.append("")
    out.append(
        f"Machine: {env.get('nproc', '?')} cores ({env.get('cpu_model', '?')}), kernel {env.get('kernel', '?')}; "
        f"nginx {env.get('nginx_version', '?')}, oha {env.get('oha_version', '?')}, git {env.get('git_rev', '?')}. "
        f"Gateway pinned to core {env.get('gateway_cpu', 0)}, upstream nginx + oha to core {env.get('load_cpu', 1)}. "
        f"{env.get('runs', '?')} run(s) per configuration; fixed-rate runs {env.get('duration_s', '?')} s with "
        f"{env.get('rate_conns', '?')} connections (oha -q, --latency-correction); max-throughput runs "
        f"{env.get('max_duration_s', '?')} s with {env.get('max_conns', '?')} connections."
        + (" **Quick mode (smoke test, not for publishing).**" if env.get("quick") else "")
    )
    out.append("")

    # ---- latency at fixed rates ----
    rate_keys = sorted({(c, m, k) for (c, m, k) in groups if k.startswith("rate")},
                       key=lambda t: sort_key((t[0], t[1], int(t[2][4:]))))
    rows = []
    for config, mode, kind in rate_keys:
        g = groups[(config, mode, kind)]
        base = groups.get(("direct", mode, kind), [])
        p50, p99 = med(r.p50 for r in g), med(r.p99 for r in g)
        b50, b99 = med(r.p50 for r in base), med(r.p99 for r in base)
        added50 = None if config == "direct" or p50 is None or b50 is None else p50 - b50
        added99 = None if config == "direct" or p99 is None or b99 is None else p99 - b99
        per_run = ", ".join(f"{ms(r.p50)} / {ms(r.p99)}" for r in g)
        rows.append([CONFIG_LABEL.get(config, config), mode, kind[4:], num(med(r.rps for r in g)),
                     ms(p50), ms(p99), ms(added50), ms(added99), per_run, failures(g)])
    if rows:
        out.append("#### Latency at fixed request rates (median of runs; added = config − direct)")
        out.append("")
        out.append(table(["config", "mode", "rate (req/s)", "achieved req/s", "p50 ms", "p99 ms",
                          "added p50 ms", "added p99 ms", "per run p50 / p99 ms", "failed"], rows))
        out.append("")

    # ---- max throughput ----
    max_keys = sorted({(c, m, k) for (c, m, k) in groups if k == "max"}, key=sort_key)
    rows = []
    for config, mode, kind in max_keys:
        g = groups[(config, mode, kind)]
        rps = med(r.rps for r in g)
        ref = med(r.rps for r in groups.get(("nginx", mode, "max"), []))
        ratio = "–" if rps is None or not ref else f"{rps / ref:.2f}"
        rows.append([CONFIG_LABEL.get(config, config), mode, num(rps),
                     ", ".join(num(r.rps) for r in g), ratio,
                     ms(med(r.p50 for r in g)), ms(med(r.p99 for r in g)), failures(g)])
    if rows:
        conns = env.get("max_conns", 64)
        out.append(f"#### Maximum throughput at {conns} connections")
        out.append("")
        out.append(table(["config", "mode", "req/s (median)", "per run req/s", "vs nginx proxy_pass",
                          "p50 ms", "p99 ms", "failed"], rows))
        out.append("")

    # ---- CPU per request ----
    kinds = sorted({k for (_, _, k) in groups if k.startswith("rate")}, key=lambda k: int(k[4:])) + \
        (["max"] if any(k == "max" for (_, _, k) in groups) else [])
    cm = sorted({(c, m) for (c, m, k) in groups if k in kinds}, key=sort_key)
    rows = []
    for config, mode in cm:
        which = "upstream" if config == "direct" else "gateway"
        label = "A: upstream nginx only (ref.)" if config == "direct" else CONFIG_LABEL.get(config, config)
        cells = [med(r.cpu_us_per_req(which) for r in groups.get((config, mode, k), [])) for k in kinds]
        rows.append([label, mode] + [num(c, "{:.1f}") for c in cells])
    if rows:
        out.append("#### CPU time per request of the gateway process (µs, utime+stime from /proc, median of runs)")
        out.append("")
        out.append(table(["config", "mode"] + [("@ max" if k == "max" else f"@ {k[4:]} req/s") for k in kinds],
                         rows))
        out.append("")
        out.append(f"(clock-tick resolution {1e6 / (runs[0].meta.get('clk_tck') or 100):.0f} µs per reading; "
                   "nginx = master + worker; the reference row is the upstream nginx worker in configuration A.)")
        out.append("")

    # ---- memory ----
    idle = env.get("idle") or {}
    rows = []
    for config in CONFIG_ORDER:
        if config == "direct":
            continue
        cr = [r for r in runs if r.config == config]
        if not cr and config not in idle:
            continue
        last = max(cr, key=lambda r: r.meta.get("wall_end", 0)) if cr else None
        peak = max((r.meta.get("gateway_hwm_kb_after", 0) for r in cr), default=0)
        rows.append([CONFIG_LABEL[config], mib((idle.get(config) or {}).get("rss_kb")),
                     mib(last.meta.get("gateway_rss_kb_after") if last else None), mib(peak)])
    if rows:
        out.append("#### Gateway memory (MiB; nginx = master + worker)")
        out.append("")
        out.append(table(["config", "RSS idle", "RSS after load", "peak RSS (VmHWM)"], rows))
        out.append("")

    # ---- concurrent streams ----
    conc = sorted(((c, m, k) for (c, m, k) in groups if k.startswith("conc")), key=sort_key)
    rows = []
    for key in conc:
        for r in groups[key]:
            mean_conc = None
            if r.average_s and r.total_s:
                mean_conc = r.average_s * r.count / r.total_s
            path = "stream" if r.mode == "stream" else "slow stream (~1 s each)"
            rows.append([CONFIG_LABEL.get(r.config, r.config), path, key[2][4:], r.count, r.ok_2xx,
                         r.non_2xx, r.n_errors, num(mean_conc), num(r.rps), ms(r.p50, 1), ms(r.p99, 1)])
    if rows:
        out.append("#### Concurrent streams")
        out.append("")
        out.append(table(["config", "path", "connections", "requests", "2xx", "non-2xx", "errors",
                          "mean in flight", "req/s", "p50 ms", "p99 ms"], rows))
        out.append("")

    # ---- anything that went wrong ----
    notes = []
    for r in runs:
        if not r.ok:
            notes.append(f"- {r.config}/{r.mode}/{r.kind} run {r.run}: oha failed or wrote no JSON")
        bad = {k: v for k, v in r.status.items() if not k.startswith("2")}
        if bad or r.errors:
            notes.append(f"- {r.config}/{r.mode}/{r.kind} run {r.run}: status {bad or '{}'}, errors {r.errors or '{}'}")
    metering = load_json(os.path.join(root, "switchyard-metering.json"))
    if metering:
        warm = []
        for meta_path in glob.glob(os.path.join(root, "warmup", "*.meta.json")):
            meta = load_json(meta_path)
            if meta:
                warm.append(Run(meta, load_json(meta_path[: -len(".meta.json")] + ".json")))
        rows = []
        for mode, usage in (metering.get("usage") or {}).items():
            u = usage.get("usage") or {}
            sent = [r for r in runs + warm if r.config == "switchyard" and r.mode == mode]
            if not sent and not u:
                continue
            ok = sum(r.ok_2xx for r in sent) + 1  # + the smoke request
            rows.append([mode, ok, u.get("requests", "?"), u.get("errors", "?"), u.get("input_tokens", "?"),
                         u.get("output_tokens", "?"), u.get("credits", "?")])
        out.append("#### Switchyard metering check")
        out.append("")
        out.append(f"Credit balance {metering.get('balance_start')} → {metering.get('balance_end')}.")
        out.append("")
        if rows:
            out.append(table(["endpoint", "2xx sent (incl. warm-up, smoke)", "metered requests", "metered errors",
                              "input tokens", "output tokens", "credits"], rows))
            out.append("")

    exit_status = os.path.join(root, "switchyard-exit-status")
    if os.path.exists(exit_status):
        with open(exit_status) as f:
            rc = f.read().strip()
        if rc != "0":
            notes.append(f"- switchyard exited with status {rc} after SIGTERM")
    if notes:
        out.append("#### Failures")
        out.append("")
        out.extend(notes)
        out.append("")

    print("\n".join(out))


if __name__ == "__main__":
    main()
