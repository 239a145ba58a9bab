"""Which convolution shapes oneDNN's AVX2 kernels get wrong in channels_last (the bug trainables/layout.py guards).

For every (in channels 1..16, 24, 32; out 8, 15, 16, 32; stride 1, 2; kernel 1, 3; 28 or 14 px; batch 64), one
forward + backward of a Conv2d in channels_last is compared with the same in NCHW (weight and input
gradients, max relative difference), each case in a forked child with a 15 s alarm (a crash or a hang is
a result, not the end of the scan). Prints the bad cases: (shape) exit status (6 SIGABRT, 11 SIGSEGV,
14 SIGALRM = hung) and the relative difference.

    ONEDNN_MAX_CPU_ISA=AVX2 python experiments/onednn_avx2_1x1/scan.py THREADS
"""
import os
import sys

import torch

threads = int(sys.argv[1]); torch.set_num_threads(threads)
cases = [(cin, cout, s, k, hw, b) for cin in list(range(1, 17)) + [24, 32] for cout in (8, 15, 16, 32) for s in (1, 2) for k in (1, 3)
         for hw in (28, 14) for b in (64,)]
bad = []
for c in cases:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r); import signal; signal.alarm(15)
        cin, cout, s, k, hw, b = c
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)
        x = torch.randn(b, cin, hw, hw)
        def run(cl):
            m = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)
            m.load_state_dict(conv.state_dict())
            xx = x.clone()
            if cl:
                m = m.to(memory_format=torch.channels_last); xx = xx.contiguous(memory_format=torch.channels_last)
            xx.requires_grad_(True)
            m(xx).square().sum().backward()
            return m.weight.grad, xx.grad
        gw0, gx0 = run(False); gw1, gx1 = run(True)
        d = max((gw0 - gw1).abs().max().item() / (gw0.abs().max().item() + 1e-9), (gx0 - gx1).abs().max().item() / (gx0.abs().max().item() + 1e-9))
        os.write(w, f"{d:.3g}".encode()); os._exit(0)
    os.close(w)
    _, st = os.waitpid(pid, 0)
    out = os.read(r, 100).decode(); os.close(r)
    if st != 0 or not out or float(out) > 1e-3:
        bad.append((c, st, out))
        print("BAD", c, st, out, flush=True)
print("done", len(cases), "cases,", len(bad), "bad")
