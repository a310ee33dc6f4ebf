%% The context's idle_timeout, and Python's own exit on stop/1, with the real
%% port over a real open_port.
-module(py_reactor_timers_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [ctx_opts/2, listen/0, conn_pair/1, echo/2, recv_closed/1,
                              wait_until/2, active/1, capture_logs/0, stop_capture_logs/0,
                              log_events/0]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [idle_timeout_closes_quiet_connections,
     idle_timeout_option_is_checked,
     stop_runs_python_exit].

init_per_testcase(_Case, Config) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_testcase(_Case, _Config) ->
    stop_capture_logs(),
    ok.

%% A connection with no event for idle_timeout milliseconds is closed by the
%% port and reported with reason idle_timeout; the context counts it gone.
idle_timeout_closes_quiet_connections(_Config) ->
    capture_logs(),
    {ok, Ctx} = py_reactor_context:start_link(idle, worker,
                                              ctx_opts("Echo", #{idle_timeout => 300})),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = echo(Client, <<"still here">>),
    ok = recv_closed(Client),
    wait_until(fun() -> active(Ctx) =:= 0 end, no_active_connections),
    Closed = [Text || {debug, Text, _} <- log_events(),
                      binary:match(Text, <<"closed: idle_timeout">>) =/= nomatch],
    [_] = Closed,
    ok = py_reactor_context:stop(Ctx).

idle_timeout_option_is_checked(_Config) ->
    {error, {bad_option, {idle_timeout, 0}}} =
        py_reactor_context:start_link(x, worker, #{idle_timeout => 0}),
    {error, {bad_option, {idle_timeout, soon}}} =
        py_reactor_context:start_link(x, worker, #{idle_timeout => soon}),
    {ok, Ctx} = py_reactor_context:start_link(x, worker, #{idle_timeout => infinity}),
    ok = py_reactor_context:stop(Ctx).

%% stop/1: after connection_lost ran everywhere, Python exits as a program
%% would: atexit handlers run and open files are flushed.
stop_runs_python_exit(Config) ->
    Dir = ?config(priv_dir, Config),
    AtExit = filename:join(Dir, "atexit.txt"),
    Open = filename:join(Dir, "open.txt"),
    Code = iolist_to_binary(io_lib:format(
        "import atexit\n"
        "import erlang.reactor as reactor\n"
        "LOG = open(~p, 'w')\n"
        "LOST = []\n"
        "def goodbye():\n"
        "    with open(~p, 'w') as f:\n"
        "        f.write('atexit after %d connection_lost' % len(LOST))\n"
        "atexit.register(goodbye)\n"
        "class Writer(reactor.Protocol):\n"
        "    def data_received(self, data):\n"
        "        LOG.write('got %s\\n' % bytes(data).decode())\n"
        "        return 'continue'\n"
        "    def connection_lost(self):\n"
        "        LOST.append(1)\n"
        "        LOG.write('lost\\n')\n"
        "reactor.set_protocol_factory(Writer)\n", [Open, AtExit])),
    {ok, Ctx} = py_reactor_context:start_link(exiting, worker, #{setup_code => Code}),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = gen_tcp:send(Client, <<"ping">>),
    wait_until(fun() -> maps:get(bytes_in, py_reactor_context:stats(Ctx)) =:= 4 end, bytes_in),
    ok = py_reactor_context:stop(Ctx),
    {ok, <<"atexit after 1 connection_lost">>} = file:read_file(AtExit),
    {ok, <<"got ping\nlost\n">>} = file:read_file(Open),
    ok = recv_closed(Client).
