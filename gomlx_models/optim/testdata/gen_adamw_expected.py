# One-off generator of expected values for gomlx_models/optim tests (torch 1.13, float64).
import torch, numpy as np
torch.set_default_dtype(torch.float64)
def grads_seq():
    # step-dependent gradients: big first, then small, so AMSGrad's max matters.
    g = []
    for k in range(5):
        s = 10.0 if k == 0 else (0.1 if k < 3 else 1.0)
        a = torch.tensor([0.5, -1.0, 2.0]) * s * (1 + 0.1*k)
        b = torch.tensor([[1.0, -0.5], [0.25, -2.0]]) * s * (1 - 0.05*k)
        g.append((a, b))
    return g
def run(amsgrad, wd, lr, clip=None, adaptive=False, qinit=3000.0, qlen=50):
    a = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    b = torch.tensor([[0.3, -0.7], [1.5, 2.0]], requires_grad=True)
    opt = torch.optim.AdamW([a, b], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd, amsgrad=amsgrad, foreach=False)
    out = []
    queue = [qinit]  # ENF Queue seeded (3000 in main_qm9.py)
    for ga, gb in grads_seq():
        a.grad = ga.clone(); b.grad = gb.clone()
        norm = None
        if clip is not None:
            if adaptive:
                mx = 1.5*np.mean(queue) + 2*np.std(queue)
            else:
                mx = clip
            norm = float(torch.nn.utils.clip_grad_norm_([a, b], max_norm=mx, norm_type=2.0))
            if adaptive:
                queue.insert(0, mx if norm > mx else norm)
                if len(queue) > qlen: queue.pop()
        opt.step()
        out.append((a.detach().clone().tolist(), b.detach().clone().flatten().tolist(), norm))
    return out
cases = [("amsgrad_wd", dict(amsgrad=True, wd=0.1, lr=0.01)),
         ("amsgrad_enf", dict(amsgrad=True, wd=1e-12, lr=5e-4)),
         ("adam_nomax", dict(amsgrad=False, wd=0.1, lr=0.01)),
         ("clip_fixed", dict(amsgrad=True, wd=0.1, lr=0.01, clip=1.0)),
         ("clip_adaptive", dict(amsgrad=True, wd=0.1, lr=0.01, clip=0, adaptive=True, qinit=1.0, qlen=3))]
for name, kw in cases:
    print("//", name, kw)
    for a, b, n in run(**kw):
        print("{%s}, {%s}, %r" % (", ".join("%.17g" % v for v in a), ", ".join("%.17g" % v for v in b), n))
