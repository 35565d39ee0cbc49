#!/usr/bin/env python3
"""Include-direction and export checks (docs/design.md, "Layers").

1. No file under src/ includes a header of a higher layer than its own (the layer numbers of
   ARCHITECTURE.md: core 1, kernels 2, io/tokenizer 3, quant/compress/delta/mem 4, graph 5,
   engine 6). The upward includes that existed when the test was written are listed in KNOWN with
   what removes them; a new one fails, and so does a KNOWN entry that no longer exists (delete it).
2. tools/ and python/ use only include/lowbit.h (no KNOWN exceptions are left for them).
3. liblowbit.so (beside the lowbit binary) exports exactly the lb_ functions lowbit.h declares.
Usage: layers.py REPO_ROOT BUILD_DIR
"""
import os, re, subprocess, sys

LAYER = {'core': 1, 'kernels': 2, 'io': 3, 'tokenizer': 3, 'quant': 4, 'compress': 4, 'delta': 4, 'mem': 4,
         'graph': 5, 'engine': 6}
KNOWN = {  # file -> included header: why it is still there
    'src/kernels/backend_cpu.c': ['mem/arena.h', 'quant/blocks.h', 'quant/quant.h'],  # quant matmuls in the op table
    'src/kernels/cpu/attn_impl.h': ['quant/blocks.h'],       # Q8_0 KV blocks: move block structs to core
    'src/kernels/cuda/cuda_matmul.c': ['quant/blocks.h'],     # block structs for upload: move them to core
    'src/mem/report.c': ['engine/session.h'],                # session fields: report through accessors
    'src/io/gguf_meta.c': ['graph/rope.h'],                  # rope_freqs tensor: move factor math below io
    'src/io/synth.c': ['quant/quant.h'],                     # synth belongs with the pipelines
    'src/io/load.c': ['compress/model_regions.h'],           # .lbz restore: a loader hook
    'src/core/model.c': ['compress/model_regions.h'],        # .lbz restore: a loader hook
    'src/core/dtype.c': ['quant/quant.h'],                   # row dequantization: dtype traits table
}
# Exported from internal headers because python/lowbit calls them (block quantization by dtype
# number); they move into lowbit.h once it has a public dtype enum.
PYTHON_ONLY = {'lb_dtype_name', 'lb_dtype_from_name', 'lb_dtype_row_size', 'lb_quant_can_write',
               'lb_quantize_checked', 'lb_dequantize'}
INC = re.compile(r'\s*#\s*include\s+"([^"]+)"')


def includes(path):
    with open(path, errors='replace') as f:
        for n, line in enumerate(f, 1):
            m = INC.match(line)
            if m:
                yield n, m.group(1)


def violations(root):
    found = []
    for d, _, files in os.walk(os.path.join(root, 'src')):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            own = rel.split('/')[1]
            for n, inc in includes(p):
                top = inc.split('/')[0] if '/' in inc else own
                if top in LAYER and own in LAYER and LAYER[top] > LAYER[own]:
                    found.append((rel, n, inc, f'{own} (layer {LAYER[own]}) includes {top} (layer {LAYER[top]})'))
    for sub in ('tools', 'python'):
        for d, _, files in os.walk(os.path.join(root, sub)):
            for f in files:
                if not f.endswith(('.c', '.h')):
                    continue
                p = os.path.join(d, f)
                rel = os.path.relpath(p, root)
                for n, inc in includes(p):
                    if inc.split('/')[0] in LAYER:
                        found.append((rel, n, inc, 'a front end includes an internal header'))
    return found


def public_headers(root):
    """lowbit.h and the parts it includes (include/lowbit/*.h), as one text."""
    inc = os.path.join(root, 'include')
    parts = sorted(os.listdir(os.path.join(inc, 'lowbit')))
    return '\n'.join(open(p).read() for p in [os.path.join(inc, 'lowbit.h')] +
                     [os.path.join(inc, 'lowbit', f) for f in parts if f.endswith('.h')])


def exports_check(build, text):
    lib = os.path.join(build, 'liblowbit.so')
    out = subprocess.run(['nm', '-D', '--defined-only', lib], capture_output=True, text=True, check=True).stdout
    syms = {l.split()[-1] for l in out.splitlines() if len(l.split()) == 3}
    declared = set(re.findall(r'^LB_API\b[^(;]*?\b(lb_[a-z0-9_]+)\(', text, re.M))
    bad = sorted(s for s in syms if s not in declared and s not in PYTHON_ONLY)
    missing = sorted(PYTHON_ONLY - syms)
    missing += sorted(declared - syms)
    return bad, missing, len(declared)


def main():
    root, build = sys.argv[1], sys.argv[2]
    passed = failed = 0
    seen = set()
    for rel, n, inc, why in violations(root):
        seen.add((rel, inc))
        if inc in KNOWN.get(rel, []):
            continue
        print(f'FAIL: {rel}:{n}: #include "{inc}": {why}')
        failed += 1
    for rel, incs in KNOWN.items():
        for inc in incs:
            if (rel, inc) not in seen:
                print(f'FAIL: KNOWN lists {rel} -> {inc}, which is gone: remove it from tests/layers.py')
                failed += 1
    passed += failed == 0
    bad, missing, n_decl = exports_check(build, public_headers(root))
    for s in bad:
        print(f'FAIL: liblowbit.so exports {s}, which lowbit.h does not declare with LB_API')
    for s in missing:
        print(f'FAIL: lowbit.h declares {s} but liblowbit.so does not export it')
    if n_decl < 50:
        print(f'FAIL: found only {n_decl} LB_API declarations in lowbit.h (parser broken?)')
    ok = not bad and not missing and n_decl >= 50
    passed += ok
    failed += not ok
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
