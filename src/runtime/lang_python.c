/* lang_python — a persistent python3 driven by a small driver script (below).
 *
 * The driver reads request lines "E|S NONCE LEN" from the socket at fd 61 and the code from
 * the memfd at fd 62 with pread, so user code with stdin /dev/null never sees the protocol. It
 * runs code in one persistent globals dict; a trailing expression is shown with
 * sys.displayhook like the REPL. SIGINT raises KeyboardInterrupt only while user code runs
 * (state is kept); one that arrives between calls is remembered until the next request is read
 * and then dropped, so a late interrupt never hits the following call. SystemExit ends the
 * process, like `exit` in bash. Markers go straight to fd 63 (the stdout pipe as well) after
 * flushing sys.stdout and sys.stderr, so they follow all of the call's output; they are flagged
 * when the code closed sys.stdout / sys.stderr or fd 1 / 2.
 */
#include <stdio.h>

#include "runtime/runtime_int.h"

static const char runtime__python_driver[] =
    "import os, sys, signal, _ast\n"
    "def _agentd_main():\n"
    "    ctl, cfd, mark = 61, 62, " RUNTIME__MARK_FD_STR "\n"
    "    for fd in (ctl, cfd, mark):\n"
    "        os.set_inheritable(fd, False)\n"
    "    g = {'__name__': '__main__', '__builtins__': __builtins__, '__doc__': None}\n"
    "    st = [False, False]  # running, interrupt pending\n"
    "    def on_int(signum, frame):\n"
    "        if st[0]:\n"
    "            raise KeyboardInterrupt\n"
    "        st[1] = True\n"
    "    signal.signal(signal.SIGINT, on_int)\n"
    "    for s in (sys.stdout, sys.stderr):\n"
    "        try:\n"
    "            s.reconfigure(line_buffering=True)\n"
    "        except Exception:\n"
    "            pass\n"
    "    def closed(s, fd):\n"
    "        try:\n"
    "            os.fstat(fd)\n"
    "            return s is None or bool(s.closed)\n"
    "        except Exception:\n"
    "            return True\n"
    "    def show_exc(e, src, name):\n"
    "        import linecache, traceback\n"
    "        linecache.cache[name] = (len(src), None, src.decode('utf-8', 'replace').splitlines(True), "
    "name)\n"
    "        tb = e.__traceback__\n"
    "        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith('<agentd'):\n"
    "            tb = tb.tb_next\n"
    "        traceback.print_exception(type(e), e, tb)\n"
    "    def run(src, name):\n"
    "        tree = compile(src, name, 'exec', _ast.PyCF_ONLY_AST)\n"
    "        last = None\n"
    "        if tree.body and isinstance(tree.body[-1], _ast.Expr):\n"
    "            last = _ast.Expression(tree.body.pop().value)\n"
    "        exec(compile(tree, name, 'exec'), g)\n"
    "        if last is not None:\n"
    "            v = eval(compile(last, name, 'eval'), g)\n"
    "            if v is not None:\n"
    "                sys.displayhook(v)\n"
    "    def state():\n"
    "        import json\n"
    "        mt = type(sys)\n"
    "        mods = sorted({v.__name__ for k, v in g.items() if type(v) is mt and not k.startswith('__')})\n"
    "        gl = {}\n"
    "        for k, v in list(g.items()):\n"
    "            if k.startswith('__') or type(v) is mt:\n"
    "                continue\n"
    "            try:\n"
    "                r = repr(v)\n"
    "            except Exception:\n"
    "                r = '<repr failed>'\n"
    "            if len(r) > 120:\n"
    "                r = r[:117] + '...'\n"
    "            gl[k] = {'type': type(v).__name__, 'repr': r}\n"
    "        sys.stdout.write(json.dumps({'cwd': os.getcwd(), 'modules': mods, 'globals': gl}))\n"
    "    buf = b''\n"
    "    seq = 0\n"
    "    while True:\n"
    "        while b'\\n' not in buf:\n"
    "            d = os.read(ctl, 4096)\n"
    "            if not d:\n"
    "                return\n"
    "            buf += d\n"
    "        line, _, buf = buf.partition(b'\\n')\n"
    "        kind, nonce, n = line.split(b' ')\n"
    "        n = int(n)\n"
    "        src = b''\n"
    "        while len(src) < n:\n"
    "            src += os.pread(cfd, n - len(src), len(src))\n"
    "        st[1] = False\n"
    "        status = 0\n"
    "        try:\n"
    "            if kind == b'E':\n"
    "                seq += 1\n"
    "                name = '<agentd-%d>' % seq\n"
    "                try:\n"
    "                    st[0] = True\n"
    "                    if st[1]:\n"
    "                        raise KeyboardInterrupt\n"
    "                    run(src, name)\n"
    "                except KeyboardInterrupt:\n"
    "                    st[0] = False\n"
    "                    status = 130\n"
    "                    sys.stderr.write('KeyboardInterrupt\\n')\n"
    "                except SystemExit:\n"
    "                    raise\n"
    "                except BaseException as e:\n"
    "                    st[0] = False\n"
    "                    status = 1\n"
    "                    try:\n"
    "                        show_exc(e, src, name)\n"
    "                    except Exception:\n"
    "                        pass\n"
    "                finally:\n"
    "                    st[0] = False\n"
    "            elif kind == b'S':\n"
    "                state()\n"
    "        except KeyboardInterrupt:\n"
    "            status = 130\n"
    "        st[0] = False\n"
    "        for s in (sys.stdout, sys.stderr):\n"
    "            try:\n"
    "                s.flush()\n"
    "            except Exception:\n"
    "                pass\n"
    "        f = (b'" RUNTIME__FLAG_STDOUT "' if closed(sys.stdout, 1) else b'') + (b'" RUNTIME__FLAG_STDERR
    "' if closed(sys.stderr, 2) else b'')\n"
    "        os.write(mark, b'\\x1e' + nonce + b':' + str(status).encode() + f + b'\\n')\n"
    "_agentd_main()\n";

const struct runtime__lang runtime__lang_python = {
    .name = "python",
    .search_name = "python3",
    .ctl_fd = RUNTIME__CTL_FD,
    .args = (const char *const[]){"-c", runtime__python_driver, NULL},
    .request = runtime__request_socket,
    .state_json = runtime__state_passthrough,
};
