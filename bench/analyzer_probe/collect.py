import subprocess, glob, sys, json
d = sys.argv[1]; nm = sys.argv[2] if len(sys.argv) > 2 else "nm"
out = {}
for o in sorted(glob.glob(d + "/*.o")):
    for line in subprocess.run([nm, "-S", "--defined-only", o], capture_output=True, text=True).stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[3].startswith("probe"):
            out[p[3]] = int(p[1], 16)
sizes = {k[len("probe__"):]: v for k, v in out.items() if k.startswith("probe__")}
aligns = {k[len("probealign__"):]: v for k, v in out.items() if k.startswith("probealign__")}
json.dump({k: [sizes[k], aligns.get(k)] for k in sorted(sizes)}, open(d + ".json", "w"), indent=0)
for k in sorted(sizes): print(f"{k:60s} {sizes[k]:5d} {aligns.get(k)}")
