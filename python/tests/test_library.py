"""Finding the library: LOWBIT_LIBRARY, is_available(), the ImportError naming the searched paths."""
import os
import subprocess
import sys

import lowbit

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(lowbit.__file__)))


def run_py(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r)\n" % PKG_PARENT + code],
                          capture_output=True, text=True, env=e, timeout=60)


def test_loaded_library_is_the_requested_one():
    assert lowbit.is_available()
    path = lowbit.library_path()
    assert os.path.isfile(path) and os.path.basename(path).startswith("liblowbit")
    if os.environ.get("LOWBIT_LIBRARY"):
        assert path == os.environ["LOWBIT_LIBRARY"]
    assert lowbit.version().count(".") == 2


def test_cpu_kernels_level_and_forcing():
    level = lowbit.cpu_kernels().split()[0]
    assert level in ("scalar", "avx2", "avx512")
    # a lower level is honoured (and said to be forced); the variable never raises it
    r = run_py("import lowbit; print(lowbit.cpu_kernels())", LOWBIT_CPU="scalar")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("scalar")
    if level != "scalar" and not os.environ.get("LOWBIT_CPU"):
        assert "forced by LOWBIT_CPU" in r.stdout
    r = run_py("import lowbit; print(lowbit.cpu_kernels())", LOWBIT_CPU="avx512")
    assert r.returncode == 0 and "forced" not in r.stdout, r.stdout  # the CPU's own level
    if not os.environ.get("LOWBIT_CPU"):
        assert r.stdout.split()[0] == level


def test_missing_library_import_error():
    missing = "/nonexistent/dir/liblowbit.so"
    r = run_py("import lowbit\n"
               "print('available', lowbit.is_available())\n"
               "try:\n"
               "    lowbit.Model('x')\n"
               "except ImportError as e:\n"
               "    print('IMPORTERROR', e)\n", LOWBIT_LIBRARY=missing)
    assert r.returncode == 0, r.stderr  # importing the package itself never fails
    assert "available False" in r.stdout
    assert "IMPORTERROR" in r.stdout and missing in r.stdout and "LOWBIT_LIBRARY" in r.stdout


def test_search_without_env_lists_paths():
    env = dict(os.environ)
    env.pop("LOWBIT_LIBRARY", None)
    code = ("import sys; sys.path.insert(0, %r)\n" % PKG_PARENT +
            "from lowbit import _lib\nprint('\\n'.join(_lib.candidate_paths()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    paths = r.stdout.split()
    repo = os.path.dirname(PKG_PARENT)
    assert paths[0] == os.path.join(repo, "build", "liblowbit.so")
    assert any(p.endswith(os.path.join("lib", "liblowbit.so")) for p in paths)  # install prefix


def test_not_a_library():
    r = run_py("import lowbit\nprint(lowbit.is_available())", LOWBIT_LIBRARY=os.path.abspath(__file__))
    assert r.returncode == 0 and r.stdout.strip() == "False"
