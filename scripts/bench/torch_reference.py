#!/usr/bin/env python3
"""Side-by-side PyTorch timings for `enflow bench` (same case names, shapes, inputs and solver
settings), using the official en_flows modules (egnn/, flows/) of a checkout given with
--en-flows; nothing of en_flows is part of this repository. Needs torch (Debian python3-torch)
and torchdiffeq (--pydeps DIR, e.g. `python3 -m pip install --target .tools/pydeps --no-deps
torchdiffeq==0.2.3`). Never a dependency of enflow itself.

Runs under any PyTorch: Debian's 1.13 (/usr/bin/python3) or 2.x from PyPI in the bench-only
virtual environment of scripts/bench/torch2_setup.sh (.tools/torch2). --compile wraps the EGNN
of each dynamics in torch.compile (dynamic=False: one graph per shape, compiled during the
warm-up run). torch.compile's autograd does not support double backward, so the cases that
differentiate the Hutchinson trace again (adjoint stage, training iterations) report the error
instead of a time; forward, VJP, exact-trace evaluation and sampling run compiled.

Prints one JSON object per case (JSON Lines, backend "pytorch <version>[ compile]");
--out writes them as an array.
With --go-json (the array written by `enflow bench --out`), the QM9 sampling cases reuse the Go
run's molecule sizes, and --table writes the Markdown comparison table.
"""

import argparse
import fnmatch
import json
import math
import os
import pickle
import statistics
import sys
import time

CASES = [
    "dw4/forward", "dw4/vjp", "dw4/adjoint_stage", "dw4/train_iter", "dw4/train_iter_tol1e-6", "dw4/exact_eval",
    "lj13/forward", "lj13/vjp", "lj13/adjoint_stage", "lj13/train_iter", "lj13/exact_eval",
    "qm9/forward", "qm9/vjp", "qm9/sample_batched", "qm9/sample_single", "qm9/train_iter",
]
SYSTEMS = {
    "dw4": dict(nodes=4, dim=2, file="dw4/DEM_train_split_DW4.npy", scale=1.5),
    "lj13": dict(nodes=13, dim=3, file="lj13/DEM_test_split_LJ13-1000.npy", scale=1.0),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--en-flows", required=True, help="checkout of the official en_flows code (holds egnn/ and flows/)")
    p.add_argument("--pydeps", default="", help="extra sys.path entry holding torchdiffeq")
    p.add_argument("--shared", default=os.environ.get("ENFLOW_SHARED", ""), help="shared data folder")
    p.add_argument("--cases", default="dw4/*,lj13/*,qm9/*", help="comma-separated glob patterns")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--qm9-molecules", type=int, default=100)
    p.add_argument("--qm9-single", type=int, default=8)
    p.add_argument("--go-json", default="", help="results of `enflow bench --out` (QM9 sizes, table)")
    p.add_argument("--out", default="", help="write the results as a JSON array")
    p.add_argument("--table", default="", help="write a Markdown table (needs --go-json)")
    p.add_argument("--compile", action="store_true", help="torch.compile the EGNN of every dynamics (PyTorch ≥ 2)")
    return p.parse_args()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def vmhwm_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_vmhwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def cpu_s():
    return time.process_time()  # CLOCK_PROCESS_CPUTIME_ID: all threads, ns resolution


def median(v):
    return statistics.median(v) if v else 0.0


def r3(x):
    if x >= 100:
        return round(x, 1)
    if x >= 1:
        return round(x, 2)
    return round(x, 3)


class Counter:
    """Counts calls of a module (dynamics evaluations) through a forward hook."""

    def __init__(self, module):
        self.n = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


def measure(name, setup, repeats, batch, unit, backend="pytorch"):
    res = {"case": name, "backend": backend, "unit": unit, "batch": batch, "repeats": repeats}
    try:
        op = setup()
        t0 = time.perf_counter()
        op(-1)
        first = time.perf_counter() - t0
        res["first_run_ms"] = r3(first * 1e3)
        log(f"[{backend} {name}] warm-up {first:.2f}s")
        reset_vmhwm()
        walls, cpus, nfes, fwd, bwd, note = [], [], [], [], [], ""
        for rep in range(repeats):
            c0, w0 = cpu_s(), time.perf_counter()
            st = op(rep)
            wall, cpu = time.perf_counter() - w0, cpu_s() - c0
            per = st.get("per", 1)
            walls.append(wall * 1e3 / per)
            cpus.append(cpu * 1e3 / per)
            nfes.append(st["nfe"])
            fwd.append(st.get("fwd", 0))
            bwd.append(st.get("bwd", 0))
            note = st.get("note", note)
        res.update(ms=r3(median(walls)), cpu_ms=r3(median(cpus)), nfe=int(sorted(nfes)[len(nfes) // 2]),
                   peak_mb=round(vmhwm_mb(), 1), vmhwm_mb=round(vmhwm_mb(), 1), min_ms=r3(min(walls)),
                   max_ms=r3(max(walls)), runs_ms=[r3(w) for w in walls])
        if any(fwd):
            res["nfe_forward"] = int(sorted(fwd)[len(fwd) // 2])
            res["nfe_backward"] = int(sorted(bwd)[len(bwd) // 2])
        if note:
            res["note"] = note
    except Exception as e:  # report and go on, as the Go suite does
        import traceback
        traceback.print_exc()
        res["error"] = f"{type(e).__name__}: {e}"
    return res


def main():
    a = parse_args()
    sys.path.insert(0, os.path.abspath(a.en_flows))
    if a.pydeps:
        sys.path.insert(0, os.path.abspath(a.pydeps))
    # Idle OpenMP threads sleep instead of spinning: on a shared (oversubscribed) machine spinning
    # burns CPU time that says nothing about the work done. Set OMP_WAIT_POLICY to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    version = torch.__version__.split("+")[0]
    backend = f"pytorch {version}" + (" compile" if a.compile else "")
    if a.compile:
        if not hasattr(torch, "compile"):
            sys.exit(f"--compile needs PyTorch ≥ 2 (this is {torch.__version__})")
        import torch._dynamo as dynamo
        # QM9 sampling compiles one graph per molecule size (and batch): more than the default
        # recompilation limit of 8, after which dynamo would silently fall back to eager.
        for knob in ("cache_size_limit", "recompile_limit"):
            if hasattr(dynamo.config, knob):
                setattr(dynamo.config, knob, 256)
    log(f"[{backend}] threads={torch.get_num_threads()}")

    def compiled(module):
        return torch.compile(module, dynamic=False) if a.compile else module
    from egnn.models import EGNN_dynamics, EGNN_dynamics_QM9  # official en_flows modules
    from flows.ffjord import FFJORD
    from flows.distributions import PositionPrior, PositionFeaturePrior
    from flows.utils import remove_mean

    go = []
    if a.go_json:
        with open(a.go_json) as f:
            go = json.load(f)

    def selected(name):
        return any(fnmatch.fnmatch(name, p.strip()) for p in a.cases.split(",") if p.strip())

    def batch_of(sysname, b):
        s = SYSTEMS[sysname]
        path = os.path.join(a.shared, "data", s["file"]) if a.shared else ""
        if path and os.path.exists(path):
            data = np.load(path).reshape(-1, s["nodes"], s["dim"])[:b].astype(np.float64)
            src = path
        else:
            data = s["scale"] * np.random.default_rng(7).standard_normal((b, s["nodes"], s["dim"]))
            src = "synthetic"
        data = data - data.mean(axis=1, keepdims=True)
        log(f"[pytorch {sysname}] inputs: {src} (batch {b})")
        return torch.tensor(data, dtype=torch.float32)

    def particle_flow(sysname, tol=1e-4, trace="hutch"):
        s = SYSTEMS[sysname]
        torch.manual_seed(0)
        dyn = EGNN_dynamics(n_particles=s["nodes"], n_dimension=s["dim"], device="cpu", hidden_nf=32,
                            act_fn=torch.nn.SiLU(), n_layers=3, recurrent=True, tanh=True, attention=True,
                            condition_time=True, mode="egnn_dynamics", agg="sum")
        dyn.egnn = compiled(dyn.egnn)
        flow = FFJORD(dyn, trace_method="hutch", hutch_noise="bernoulli", ode_regularization=0)
        flow.set_odeint(method="dopri5", rtol=tol, atol=tol)
        flow.set_trace(trace)
        flow.train()  # training tolerances (the eval mode would switch to 1e-7)
        return flow, dyn, Counter(dyn)

    results = []

    def run(name, unit, batch, setup):
        if not selected(name):
            return
        r = measure(name, setup, a.repeats, batch, unit, backend)
        r["torch_version"], r["compiled"] = torch.__version__, a.compile
        log(f"[{backend} {name}] ms={r.get('ms')} cpu_ms={r.get('cpu_ms')} nfe={r.get('nfe')} {r.get('error', '')}")
        print(json.dumps(r), flush=True)
        results.append(r)

    for sysname in ("dw4", "lj13"):
        B = a.batch

        def graph_setup(mode, sysname=sysname):
            def setup():
                flow, dyn, _ = particle_flow(sysname)
                x = batch_of(sysname, B)
                odefunc = flow.odefunc
                odefunc.before_odeint(x)  # Rademacher ε
                t = torch.tensor(0.5)
                zeros = torch.zeros(B)
                params = tuple(flow.parameters())
                g = torch.Generator().manual_seed(3)
                ax = torch.randn(x.shape, generator=g) / B
                al = torch.full((B,), 1.0 / B)

                def op(_):
                    if mode == "forward":
                        with torch.no_grad():
                            dyn(t, x)
                    elif mode == "vjp":  # what odeint_adjoint's forward solve evaluates per stage
                        with torch.no_grad():
                            odefunc(t, (x, zeros, zeros))
                    else:  # torchdiffeq's adjoint augmented dynamics (one backward stage)
                        with torch.enable_grad():
                            y = (x.detach().requires_grad_(True), zeros.detach().requires_grad_(True),
                                 zeros.detach().requires_grad_(True))
                            f = odefunc(t.detach(), y)  # (dx, ldj, reg); reg ≡ 0 has no graph
                            torch.autograd.grad(f[:2], y[:1] + params, (-ax, -al), allow_unused=True,
                                                retain_graph=True)
                    return {"nfe": 1}
                return op
            return setup

        def train_setup(tol, sysname=sysname):
            def setup():
                flow, dyn, cnt = particle_flow(sysname, tol=tol)
                x = batch_of(sysname, B)
                prior = PositionPrior()
                opt = torch.optim.AdamW(flow.parameters(), lr=1e-3, amsgrad=True, weight_decay=1e-12)

                def op(rep):
                    torch.manual_seed(rep + 2)
                    opt.zero_grad()
                    cnt.n = 0
                    z, delta_logp, reg = flow(x)
                    fwd = cnt.n
                    nll = -(prior(z).view(-1) + delta_logp.view(-1)).mean()
                    nll.backward()
                    opt.step()
                    return {"nfe": cnt.n, "fwd": fwd, "bwd": cnt.n - fwd}
                return op
            return setup

        def exact_setup(sysname=sysname):
            def setup():
                flow, dyn, cnt = particle_flow(sysname, trace="exact")
                x = batch_of(sysname, B)
                prior = PositionPrior()

                def op(_):
                    cnt.n = 0
                    with torch.no_grad():
                        z, delta_logp, _ = flow(x)
                        (prior(z).view(-1) + delta_logp.view(-1)).numpy()
                    return {"nfe": cnt.n}
                return op
            return setup

        run(f"{sysname}/forward", "eval", B, graph_setup("forward"))
        run(f"{sysname}/vjp", "eval", B, graph_setup("vjp"))
        run(f"{sysname}/adjoint_stage", "eval", B, graph_setup("adjoint_stage"))
        run(f"{sysname}/train_iter", "iteration", B, train_setup(1e-4))
        if sysname == "dw4":
            run("dw4/train_iter_tol1e-6", "iteration", B, train_setup(1e-6))
        run(f"{sysname}/exact_eval", "batch", B, exact_setup())

    # QM9 with the published checkpoint.
    qm9_cases = [c for c in CASES if c.startswith("qm9/") and selected(c)]
    if qm9_cases:
        from flows import Flow
        from flows.actnorm import ActNormPositionAndFeatures
        from flows.dequantize import ArgmaxAndVariationalDequantizer
        ckpt = os.path.join(a.shared, "data", "pretrained", "en_flows_qm9")
        with open(os.path.join(ckpt, "args.pickle"), "rb") as f:
            targs = pickle.load(f)
        in_node_nf = 6
        net = EGNN_dynamics_QM9(in_node_nf=in_node_nf + 1, context_node_nf=targs.context_node_nf, n_dims=3,
                                device="cpu", hidden_nf=targs.nf, act_fn=torch.nn.SiLU(), n_layers=targs.n_layers,
                                recurrent=True, attention=targs.attention, tanh=targs.tanh, mode=targs.model)
        ffjord = FFJORD(net, trace_method="hutch", ode_regularization=targs.ode_regularization)
        flow = Flow(transformations=[ActNormPositionAndFeatures(in_node_nf, n_dims=3), ffjord])
        deq = ArgmaxAndVariationalDequantizer(in_node_nf, "cpu")
        flow.load_state_dict(torch.load(os.path.join(ckpt, "flow.npy"), map_location="cpu"))
        deq.load_state_dict(torch.load(os.path.join(ckpt, "dequantizer.npy"), map_location="cpu"))
        net.egnn = compiled(net.egnn)  # after loading: compiling renames the parameters
        ffjord.set_odeint(method="dopri5", rtol=1e-4, atol=1e-4)
        flow.train()  # rtol = atol = 1e-4, as the Go sampler (the paper's sampling numbers)
        prior = PositionFeaturePrior(n_dim=3, in_node_nf=in_node_nf)
        cnt = Counter(net)

        def dyn_setup(mode):
            def setup():
                Bq, N = 64, 29
                torch.manual_seed(5)
                mask = torch.ones(Bq, N, 1)
                zx, zh = prior.sample(Bq, N, mask)
                z = torch.cat([zx, zh], dim=2)
                eps = torch.randn_like(z)
                edge_mask = (1 - torch.eye(N)).unsqueeze(0).repeat(Bq, 1, 1).view(-1, 1)
                t = torch.tensor(0.5)

                def op(_):
                    if mode == "forward":
                        with torch.no_grad():
                            net._forward(t, z, mask, edge_mask, None)
                    else:
                        with torch.enable_grad():
                            zz = z.detach().requires_grad_(True)
                            f = net._forward(t, zz, mask, edge_mask, None)
                            torch.autograd.grad(f, zz, eps)
                    return {"nfe": 1}
                return op
            return setup

        def go_sizes(case):
            for r in go:
                if r.get("case") == case and "sizes=" in r.get("note", ""):
                    return [int(s) for s in r["note"].split("sizes=")[1].split()[0].split(",")]
            return None

        def sample_setup(batched):
            def setup():
                sizes = go_sizes("qm9/sample_batched" if batched else "qm9/sample_single")
                if sizes is None:  # en_flows' p(N) is in qm9/analyze (heavy imports): fall back to sizes near the mode
                    rng = np.random.default_rng(42)
                    sizes = list(rng.choice([17, 18, 19, 20], size=a.qm9_molecules if batched else a.qm9_single))
                groups = {}
                for n in sizes:
                    groups[n] = groups.get(n, 0) + 1
                plan = []
                for n in sorted(groups, reverse=True):
                    k = groups[n]
                    step = 100 if batched else 1
                    for s in range(0, k, step):
                        plan.append((n, min(step, k - s)))

                def op(rep):
                    torch.manual_seed(rep + 2)
                    cnt.n = 0
                    for n, b in plan:
                        mask = torch.ones(b, n, 1)
                        zx, zh = prior.sample(b, n, mask)
                        z = torch.cat([zx, zh], dim=2)
                        edge_mask = (1 - torch.eye(n)).unsqueeze(0).repeat(b, 1, 1).view(-1, 1)
                        with torch.no_grad():
                            y = flow.reverse(z, mask, edge_mask, None)
                            deq.reverse({"categorical": y[:, :, 3:8], "integer": y[:, :, 8:]})
                    return {"nfe": cnt.n, "per": len(sizes),
                            "note": f"molecules={len(sizes)} sizes={','.join(str(s) for s in sizes)}"}
                return op
            return setup

        def train_setup():
            # One training iteration of main_qm9.py with the published weights and hyperparameters
            # (args.pickle): the first 32 molecules of the shipped test split in file order,
            # padded to the largest (en_flows' collate), dequantizer + flow loss with the
            # ODE regulariser, backward (adjoint), en_flows' adaptive clipping of the flow's
            # gradients, AdamW(amsgrad) step. log p(N) is a constant and left out.
            def setup():
                Bq = 32
                d = np.load(os.path.join(a.shared, "data", "qm9", "cormorant_qm9_test.npz"))
                n_at = d["num_atoms"][:Bq]
                N = int(n_at.max())
                charges = torch.tensor(d["charges"][:Bq, :N], dtype=torch.float32)
                pos = torch.tensor(d["positions"][:Bq, :N], dtype=torch.float32)
                node_mask = (charges > 0).float().unsqueeze(2)
                x = pos * node_mask
                x = x - (x.sum(1, keepdim=True) / node_mask.sum(1, keepdim=True)) * node_mask
                types = torch.tensor([1, 6, 7, 8, 9], dtype=torch.float32)
                one_hot = (charges.unsqueeze(2) == types.view(1, 1, 5)).float() * node_mask
                ch = charges.unsqueeze(2)
                em = node_mask.squeeze(2).unsqueeze(1) * node_mask.squeeze(2).unsqueeze(2)
                em = em * (1 - torch.eye(N)).unsqueeze(0)
                edge_mask = em.view(Bq * N * N, 1)
                opt = torch.optim.AdamW(list(deq.parameters()) + list(flow.parameters()), lr=2e-4, amsgrad=True,
                                        weight_decay=1e-12)
                queue = [3000.0]

                def op(rep):
                    torch.manual_seed(rep + 2)
                    cnt.n = 0
                    opt.zero_grad()
                    hq, log_q = deq({"categorical": one_hot, "integer": ch}, node_mask, edge_mask, x)
                    xh = torch.cat([x, hq["categorical"], hq["integer"]], dim=2)
                    z, delta_logp, reg = flow(xh, node_mask, edge_mask.view(Bq, N * N), None)
                    log_pz = prior(z[:, :, :3], z[:, :, 3:], node_mask)
                    nll = -(log_pz + delta_logp - log_q).mean()
                    loss = nll + targs.ode_regularization * reg.mean()
                    fwd = cnt.n
                    loss.backward()
                    q = np.array(queue[-50:])
                    max_norm = 1.5 * q.mean() + 2 * q.std()
                    gn = float(torch.nn.utils.clip_grad_norm_(flow.parameters(), max_norm=max_norm))
                    queue.append(min(gn, max_norm))
                    opt.step()
                    return {"nfe": cnt.n, "fwd": fwd, "bwd": cnt.n - fwd,
                            "note": f"molecules={Bq} padded_atoms={N}"}
                return op
            return setup

        run("qm9/forward", "eval", 64, dyn_setup("forward"))
        run("qm9/vjp", "eval", 64, dyn_setup("vjp"))
        run("qm9/sample_batched", "molecule", 100, sample_setup(True))
        run("qm9/sample_single", "molecule", 1, sample_setup(False))
        run("qm9/train_iter", "iteration", 32, train_setup())

    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    if a.table:
        if not go:
            log("--table needs --go-json")
        else:
            write_table(a.table, go, results)


def write_table(path, go, torch_results):
    """Markdown: one row per case; enflow SimpleGo, enflow XLA CPU, then one column per PyTorch
    run (version, eager or compiled, in the order given); wall-time ratios of SimpleGo and XLA
    to the fastest PyTorch run of the row (named in the last column)."""
    by, torch_labels = {}, []
    for r in go + torch_results:
        be = r["backend"]
        if be.startswith("pytorch"):
            kind = be
            if kind not in torch_labels:
                torch_labels.append(kind)
        else:
            kind = "simplego" if be.startswith("simplego") else ("xla" if be.startswith("xla") else be)
        by.setdefault(r["case"], {})[kind] = r

    def ok(r):
        return r is not None and not r.get("error") and r.get("ms")

    def cell(r):
        if r is None:
            return "–"
        if r.get("error"):
            return "fails: " + r["error"].split(":")[0]
        s = f"{fmt(r['ms'])} ({fmt(r['cpu_ms'])})"
        if r.get("nfe", 1) > 1:
            s += f", {r['nfe']} NFE"
        return s

    def ratio(r, ref):
        if not ok(r) or not ok(ref):
            return "–"
        return f"{ref['ms'] / r['ms']:.2g}×"

    head = ["case", "enflow SimpleGo", "enflow XLA CPU"] + [f"{t} (2 threads)".replace("pytorch", "PyTorch")
                                                          for t in torch_labels]
    head += ["fastest PyTorch", "SimpleGo speed-up", "XLA speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),]
    for c in CASES:
        row = by.get(c)
        if not row:
            continue
        sg, xla = row.get("simplego"), row.get("xla")
        tr = [row.get(t) for t in torch_labels]
        good = [(r["ms"], t) for r, t in zip(tr, torch_labels) if ok(r)]
        best = min(good)[1] if good else None
        ref = row.get(best) if best else None
        cells = [c, cell(sg), cell(xla)] + [cell(r) for r in tr]
        cells += [best.replace("pytorch", "PyTorch") if best else "–", ratio(sg, ref), ratio(xla, ref)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Wall ms per unit of the case (CPU ms in brackets); speed-up = fastest PyTorch wall ms / "
              "enflow wall ms (> 1: enflow is faster)."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


if __name__ == "__main__":
    main()
