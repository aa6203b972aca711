"""sig_after.py SIG PATTERN LOG -- CMD...: run CMD (stdout to LOG), send SIG once PATTERN appears in LOG; exit with CMD's code."""
import os, signal, subprocess, sys, time
sig, pattern, log = getattr(signal, "SIG" + sys.argv[1]), sys.argv[2], sys.argv[3]
with open(log, "w") as out:
    p = subprocess.Popen(sys.argv[5:], stdout=out, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 240
    while p.poll() is None and time.time() < deadline:
        if pattern in open(log, errors="replace").read():
            p.send_signal(sig)
            break
        time.sleep(0.1)
    sys.exit(p.wait())
