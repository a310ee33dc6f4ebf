%% py_reactor_context against the real priv/py_reactor_port.
-module(py_reactor_context_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [active/1, expect_exit/2, ctx_opts/1, ctx_opts/2, listen/0, connect/1, conn_pair/1,
                              echo/2, echo/3, recv_closed/1, port_os_pids/0,
                              os_pid_alive/1, wait_until/2, log_events/0]).

%% A case that hangs fails on its own, with its name, long before the run's
%% outer limit; the slowest case takes well under a minute.
suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [start_stop,
     modes,
     bad_mode_and_options,
     setup_failure,
     app_module_failure,
     app_module_factory,
     exec_eval_call,
     call_timeout,
     erlang_send,
     python_logs,
     client_info,
     accept_loop_50_clients,
     two_contexts_isolated,
     max_connections,
     python_exception_closes_connection,
     bad_action_closes_connection,
     stop_calls_connection_lost,
     stop_kills_stuck_port,
     stats_match,
     handoff_default,
     handoff_errors,
     segfault_kills_only_the_port,
     port_killed_externally,
     port_exits,
     context_killed_ends_port,
     vm_death_ends_port,
     recording,
     bad_frames].

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, _Config) ->
    py_reactor_test_lib:stop_capture_logs(),
    ok.

%% Helpers.

start(Id, Protocol) ->
    start(Id, Protocol, #{}).

start(Id, Protocol, Extra) ->
    {ok, Ctx} = py_reactor_context:start_link(Id, worker, ctx_opts(Protocol, Extra)),
    Ctx.

%% Accepts a connection on LSock and hands it to Ctx; returns the client side.
handed_off(Ctx, LSock) ->
    handed_off(Ctx, LSock, #{}).

handed_off(Ctx, LSock, ClientInfo) ->
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, ClientInfo),
    Client.

%% Tests.

start_stop(_Config) ->
    Before = port_os_pids(),
    {ok, Ctx} = py_reactor_context:start_link(1, worker),
    #{id := 1, mode := worker, os_pid := OsPid, active_connections := 0,
      total_connections := 0, max_connections := 100, refused_handoffs := 0,
      total_requests := 0, bytes_in := 0, bytes_out := 0,
      python_errors := 0} = py_reactor_context:stats(Ctx),
    [OsPid] = port_os_pids() -- Before,
    MRef = monitor(process, Ctx),
    ok = py_reactor_context:stop(Ctx),
    receive {'DOWN', MRef, process, Ctx, normal} -> ok after 1000 -> ct:fail(not_down) end,
    false = os_pid_alive(OsPid),
    Before = port_os_pids(),
    %% Stopping a stopped context is fine.
    ok = py_reactor_context:stop(Ctx).

modes(_Config) ->
    [begin
         {ok, Ctx} = py_reactor_context:start_link(Mode, Mode, ctx_opts("Echo")),
         #{mode := Mode} = py_reactor_context:stats(Ctx),
         {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>),
         ok = py_reactor_context:stop(Ctx)
     end || Mode <- [worker, subinterp, owngil]],
    ok.

bad_mode_and_options(_Config) ->
    Before = port_os_pids(),
    {error, {bad_mode, threads}} = py_reactor_context:start_link(1, threads),
    {error, {bad_mode, threads}} = py_reactor_context:start_link(1, threads, #{}),
    {error, {unknown_option, max_conections}} =
        py_reactor_context:start_link(1, worker, #{max_conections => 3}),
    {error, {bad_option, {max_connections, 0}}} =
        py_reactor_context:start_link(1, worker, #{max_connections => 0}),
    {error, {bad_option, {default, yes}}} =
        py_reactor_context:start_link(1, worker, #{default => yes}),
    {error, {bad_option, {setup_code, 42}}} =
        py_reactor_context:start_link(1, worker, #{setup_code => 42}),
    {error, {bad_option, {python_path, "/tmp"}}} =
        py_reactor_context:start_link(1, worker, #{python_path => "/tmp"}),
    {error, {open_port, _, "/nonexistent/py_reactor_port"}} =
        py_reactor_context:start_link(1, worker, #{port_executable => "/nonexistent/py_reactor_port"}),
    {ok, Ctx} = py_reactor_context:start_link(1, worker, #{name => named_ctx}),
    Ctx = whereis(named_ctx),
    {error, {already_started, Ctx}} = py_reactor_context:start_link(2, worker, #{name => named_ctx}),
    ok = py_reactor_context:stop(named_ctx),
    undefined = whereis(named_ctx),
    Before = port_os_pids().

setup_failure(_Config) ->
    Before = port_os_pids(),
    {error, {python, <<"ValueError">>, <<"boom">>, Traceback}} =
        py_reactor_context:start_link(2, worker, #{setup_code => <<"x = 1\nraise ValueError('boom')\n">>}),
    true = is_binary(Traceback),
    {_, _} = binary:match(Traceback, <<"Traceback (most recent call last)">>),
    {_, _} = binary:match(Traceback, <<"line 2">>),
    {_, _} = binary:match(Traceback, <<"ValueError">>),
    {_, _} = binary:match(Traceback, <<"boom">>),
    %% The caller is alive, nothing is left behind.
    Before = port_os_pids(),
    %% A syntax error too.
    {error, {python, <<"SyntaxError">>, _, _}} =
        py_reactor_context:start_link(2, worker, #{setup_code => <<"def (:\n">>}),
    Before = port_os_pids(),
    receive Msg -> ct:fail({unexpected_message, Msg}) after 100 -> ok end.

app_module_failure(_Config) ->
    Before = port_os_pids(),
    {error, {python, <<"ModuleNotFoundError">>, _, _}} =
        py_reactor_context:start_link(3, worker, #{app_module => no_such_module_here}),
    {error, {python, _, _, _}} =
        py_reactor_context:start_link(3, worker, #{python_path => [py_reactor_test_lib:protocols_dir()],
                                                    app_module => <<"test_protocols">>,
                                                    app_callable => <<"NOT_CALLABLE">>}),
    {error, {python, _, _, _}} =
        py_reactor_context:start_link(3, worker, #{python_path => [py_reactor_test_lib:protocols_dir()],
                                                    app_module => <<"test_protocols">>,
                                                    app_callable => <<"no_such_attribute">>}),
    Before = port_os_pids().

app_module_factory(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(4, worker,
                                              #{python_path => [py_reactor_test_lib:protocols_dir()],
                                                app_module => "test_protocols",
                                                app_callable => 'Upper'}),
    {LSock, _} = listen(),
    Client = handed_off(Ctx, LSock),
    ok = echo(Client, <<"hello">>, <<"HELLO">>),
    ok = py_reactor_context:stop(Ctx).

exec_eval_call(_Config) ->
    Ctx = start(5, "Echo"),
    ok = py_reactor_context:exec(Ctx, <<"x = 41">>),
    {ok, 42} = py_reactor_context:eval(Ctx, <<"x + 1">>),
    {ok, 42} = py_reactor_context:eval(Ctx, "x + 1"),
    {ok, <<"abc">>} = py_reactor_context:eval(Ctx, <<"'abc'">>),
    {ok, <<"bytes">>} = py_reactor_context:eval(Ctx, <<"b'bytes'">>),
    {ok, {1, 2.5, none, true, false, [1, <<"a">>], #{<<"k">> := [1, 2]}}} =
        py_reactor_context:eval(Ctx, <<"(1, 2.5, None, True, False, [1, 'a'], {'k': [1, 2]})">>),
    Big = 1 bsl 100,
    {ok, Big} = py_reactor_context:eval(Ctx, <<"2 ** 100">>),
    {ok, 3} = py_reactor_context:call(Ctx, operator, add, [1, 2]),
    {ok, 4.0} = py_reactor_context:call(Ctx, <<"math">>, <<"sqrt">>, [16]),
    ok = py_reactor_context:exec(Ctx, <<"def ident(x):\n    return x\n">>),
    Self = self(),
    {ok, Self} = py_reactor_context:call(Ctx, '__main__', ident, [Self]),
    {ok, <<1, 2, 255>>} = py_reactor_context:call(Ctx, '__main__', ident, [{bytes, <<1, 2, 255>>}]),
    {ok, atom} = py_reactor_context:call(Ctx, '__main__', ident, [atom]),
    {ok, none} = py_reactor_context:call(Ctx, '__main__', ident, [undefined]),
    {ok, #{a := {1, [2.0]}}} =
        py_reactor_context:call(Ctx, '__main__', ident, [#{a => {1, [2.0]}}]),
    %% Errors.
    {error, {python, <<"KeyError">>, _, TbKey}} =
        py_reactor_context:exec(Ctx, <<"raise KeyError('k')">>),
    {_, _} = binary:match(TbKey, <<"Traceback (most recent call last)">>),
    {_, _} = binary:match(TbKey, <<"KeyError">>),
    {error, {python, <<"NameError">>, _, _}} = py_reactor_context:eval(Ctx, <<"undefined_name">>),
    {error, {python, <<"SyntaxError">>, _, _}} = py_reactor_context:eval(Ctx, <<"1 +">>),
    {error, {python, <<"ZeroDivisionError">>, _, _}} =
        py_reactor_context:call(Ctx, operator, truediv, [1, 0]),
    {error, {python, <<"ModuleNotFoundError">>, _, _}} =
        py_reactor_context:call(Ctx, no_such_module_here, f, []),
    {error, {python, <<"AttributeError">>, _, _}} =
        py_reactor_context:call(Ctx, math, no_such_function, []),
    {error, {unconvertible, _}} = py_reactor_context:eval(Ctx, <<"object()">>),
    {error, {bad_request, _}} = py_reactor_context:call(Ctx, '__main__', ident, [make_ref()]),
    %% Still serving.
    {ok, 42} = py_reactor_context:eval(Ctx, <<"x + 1">>),
    ok = py_reactor_context:stop(Ctx).

call_timeout(_Config) ->
    Ctx = start(6, "Echo"),
    {error, timeout} = py_reactor_context:exec(Ctx, <<"import time; time.sleep(1)">>, 100),
    %% The context goes on; the next request waits for the sleep to end.
    {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>, 5000),
    {ok, 3} = py_reactor_context:call(Ctx, operator, add, [1, 2], infinity),
    ok = py_reactor_context:stop(Ctx).

erlang_send(_Config) ->
    Ctx = start(7, "Echo"),
    ok = py_reactor_context:exec(Ctx, <<"import erlang\n"
                                        "def notify(pid, x):\n"
                                        "    erlang.send(pid, ('got', x, [1, 2.5, None]))\n">>),
    {ok, none} = py_reactor_context:call(Ctx, '__main__', notify, [self(), hello]),
    receive
        %% The atom comes back an atom (erlang.Atom), the str a binary.
        {<<"got">>, hello, [1, 2.5, none]} -> ok
    after 5000 ->
        ct:fail(no_message_from_python)
    end,
    %% From a Python thread too.
    ok = py_reactor_context:exec(Ctx, <<"import threading\n"
                                        "def later(pid):\n"
                                        "    t = threading.Thread(target=erlang.send, args=(pid, 'from_thread'))\n"
                                        "    t.start()\n"
                                        "    t.join()\n">>),
    {ok, none} = py_reactor_context:call(Ctx, '__main__', later, [self()]),
    receive
        <<"from_thread">> -> ok
    after 5000 ->
        ct:fail(no_message_from_python_thread)
    end,
    ok = py_reactor_context:stop(Ctx).

python_logs(_Config) ->
    ok = py_reactor_test_lib:capture_logs(),
    Ctx = start(python_logs_ctx, "Echo"),
    ok = py_reactor_context:exec(Ctx, <<"print('hello from python')\n"
                                        "import sys\n"
                                        "print('warning from python', file=sys.stderr)\n">>),
    ok = py_reactor_context:exec(Ctx, <<"print('last line')">>),
    Events = logs_until(<<"last line">>),
    %% Each line once, at its level, with the context's metadata.
    [{info, _, #{py_reactor_context := python_logs_ctx, domain := [py_reactor]}}] =
        [E || E = {_, Text, _} <- Events, binary:match(Text, <<"hello from python">>) =/= nomatch],
    [{warning, _, #{py_reactor_context := python_logs_ctx, domain := [py_reactor]}}] =
        [E || E = {_, Text, _} <- Events, binary:match(Text, <<"warning from python">>) =/= nomatch],
    ok = py_reactor_context:stop(Ctx).

%% The log events up to the first one whose text contains Pattern (which
%% must come within 5 s).
logs_until(Pattern) ->
    receive
        {py_reactor_test_log, Level, Text, Meta} ->
            case binary:match(Text, Pattern) of
                nomatch -> [{Level, Text, Meta} | logs_until(Pattern)];
                _ -> [{Level, Text, Meta}]
            end
    after 5000 ->
        ct:fail({not_logged, Pattern})
    end.

client_info(_Config) ->
    Ctx = start(8, "Echo"),
    {LSock, _} = listen(),
    Client = handed_off(Ctx, LSock, #{extra => 1}),
    {ok, {_, ClientPort}} = inet:sockname(Client),
    Expected = iolist_to_binary(io_lib:format(
        "(['addr', 'conn_id', 'extra', 'port', 'reactor_pid', 'type'], '127.0.0.1', ~b, 'tcp', True)",
        [ClientPort])),
    ok = echo(Client, <<"info">>, Expected),
    %% handoff/3 with an addr given as a string, the specification's way.
    {Client2, Server2} = conn_pair(LSock),
    {ok, Fd} = inet:getfd(Server2),
    {ok, {Addr, Port}} = inet:peername(Server2),
    ok = py_reactor_context:handoff(Ctx, Fd, #{addr => inet:ntoa(Addr), port => Port, type => tcp}),
    ok = gen_tcp:close(Server2),
    {ok, {_, ClientPort2}} = inet:sockname(Client2),
    Expected2 = iolist_to_binary(io_lib:format(
        "(['addr', 'conn_id', 'port', 'reactor_pid', 'type'], '127.0.0.1', ~b, 'tcp', True)",
        [ClientPort2])),
    ok = echo(Client2, <<"info">>, Expected2),
    ok = py_reactor_context:stop(Ctx).

%% The specification's accept loop (handoff/2 to the default context), with
%% 50 clients at once.
accept_loop_50_clients(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(9, worker, ctx_opts("Echo", #{default => true})),
    {ok, ListenSock} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true},
                                          {ip, {127, 0, 0, 1}}, {backlog, 128}]),
    {ok, ListenPort} = inet:port(ListenSock),
    Acceptor = spawn_link(fun() -> accept_loop(ListenSock) end),
    ok = gen_tcp:controlling_process(ListenSock, Acceptor),
    Parent = self(),
    Clients = [spawn_link(fun() -> Parent ! {self(), echo_client(ListenPort, N, 10)} end)
               || N <- lists:seq(1, 50)],
    [receive
         {C, Result} -> ok = Result
     after 30000 ->
         ct:fail({client_timeout, C})
     end || C <- Clients],
    wait_until(fun() -> active(Ctx) =:= 0 end, all_closed),
    #{total_connections := 50, active_connections := 0, total_requests := 500,
      refused_handoffs := 0, python_errors := 0} = py_reactor_context:stats(Ctx),
    unlink(Acceptor),
    exit(Acceptor, kill),
    ok = py_reactor_context:stop(Ctx).

accept_loop(ListenSock) ->
    {ok, ClientSock} = gen_tcp:accept(ListenSock),
    {ok, {Addr, Port}} = inet:peername(ClientSock),
    %% Get the raw file descriptor
    {ok, Fd} = inet:getfd(ClientSock),
    %% Hand off to Python
    ok = py_reactor_context:handoff(Fd, #{
        addr => inet:ntoa(Addr),
        port => Port,
        type => tcp
    }),
    %% The port has its own copy of the descriptor now.
    ok = gen_tcp:close(ClientSock),
    accept_loop(ListenSock).

echo_client(Port, N, Rounds) ->
    Sock = connect(Port),
    [ok = echo(Sock, iolist_to_binary(io_lib:format("client ~b round ~b", [N, R])))
     || R <- lists:seq(1, Rounds)],
    ok = gen_tcp:close(Sock).

two_contexts_isolated(_Config) ->
    CtxA = start(a, "Echo"),
    CtxB = start(b, "Upper"),
    #{os_pid := PidA} = py_reactor_context:stats(CtxA),
    #{os_pid := PidB} = py_reactor_context:stats(CtxB),
    true = PidA =/= PidB,
    {LSock, _} = listen(),
    ClientA = handed_off(CtxA, LSock),
    ClientB = handed_off(CtxB, LSock),
    ok = echo(ClientA, <<"hello">>, <<"hello">>),
    ok = echo(ClientB, <<"hello">>, <<"HELLO">>),
    %% Interpreter state is separate too.
    ok = py_reactor_context:exec(CtxA, <<"marker = 'a'">>),
    {ok, <<"a">>} = py_reactor_context:eval(CtxA, <<"marker">>),
    {error, {python, <<"NameError">>, _, _}} = py_reactor_context:eval(CtxB, <<"marker">>),
    %% Changing B's factory does not change A's.
    ok = py_reactor_context:exec(CtxB, <<"import test_protocols; test_protocols.use('Echo')">>),
    ClientA2 = handed_off(CtxA, LSock),
    ClientB2 = handed_off(CtxB, LSock),
    ok = echo(ClientA2, <<"abc">>, <<"abc">>),
    ok = echo(ClientB2, <<"abc">>, <<"abc">>),
    ok = echo(ClientB, <<"still upper">>, <<"STILL UPPER">>),
    #{total_connections := 2} = py_reactor_context:stats(CtxA),
    #{total_connections := 2} = py_reactor_context:stats(CtxB),
    %% Stopping one leaves the other serving.
    ok = py_reactor_context:stop(CtxA),
    ok = recv_closed(ClientA),
    ok = echo(ClientB2, <<"def">>, <<"def">>),
    ok = py_reactor_context:stop(CtxB).

max_connections(_Config) ->
    Ctx = start(10, "Echo", #{max_connections => 2}),
    {LSock, _} = listen(),
    Client1 = handed_off(Ctx, LSock),
    Client2 = handed_off(Ctx, LSock),
    ok = echo(Client1, <<"one">>),
    ok = echo(Client2, <<"two">>),
    {Client3, Server3} = conn_pair(LSock),
    {error, max_connections} = py_reactor_context:handoff_socket(Ctx, Server3, #{}),
    {ok, Fd3} = inet:getfd(Server3),
    {error, max_connections} = py_reactor_context:handoff(Ctx, Fd3, #{}),
    #{active_connections := 2, total_connections := 2, refused_handoffs := 2,
      max_connections := 2} = py_reactor_context:stats(Ctx),
    %% The caller kept the refused socket: it still works from Erlang.
    ok = gen_tcp:send(Client3, <<"ping">>),
    {ok, <<"ping">>} = gen_tcp:recv(Server3, 4, 5000),
    %% Once a connection closes, the next handoff is accepted.
    ok = gen_tcp:close(Client1),
    wait_until(fun() -> active(Ctx) =:= 1 end, one_closed),
    ok = py_reactor_context:handoff_socket(Ctx, Server3, #{}),
    ok = echo(Client3, <<"three">>),
    ok = echo(Client2, <<"two again">>),
    #{active_connections := 2, total_connections := 3, refused_handoffs := 2} =
        py_reactor_context:stats(Ctx),
    ok = py_reactor_context:stop(Ctx).

python_exception_closes_connection(_Config) ->
    ok = py_reactor_test_lib:capture_logs(),
    Ctx = start(exc_ctx, "Echo"),
    {LSock, _} = listen(),
    Client1 = handed_off(Ctx, LSock),
    Client2 = handed_off(Ctx, LSock),
    ok = gen_tcp:send(Client1, <<"raise">>),
    ok = recv_closed(Client1),
    ok = echo(Client2, <<"still here">>),
    wait_until(fun() -> active(Ctx) =:= 1 end, one_closed),
    #{python_errors := 1, total_connections := 2} = py_reactor_context:stats(Ctx),
    %% The traceback is logged once, at warning or error, with the context id.
    Events = [E || E = {Level, Text, _} <- log_events(),
                   binary:match(Text, <<"asked to raise">>) =/= nomatch,
                   logger:compare_levels(Level, warning) =/= lt],
    case Events of
        [{_, Text, #{py_reactor_context := exc_ctx}}] ->
            {_, _} = binary:match(Text, <<"Traceback">>),
            {_, _} = binary:match(Text, <<"RuntimeError">>);
        _ ->
            ct:fail({traceback_not_logged_once, Events})
    end,
    ok = py_reactor_context:stop(Ctx).

bad_action_closes_connection(_Config) ->
    ok = py_reactor_test_lib:capture_logs(),
    Ctx = start(bad_action_ctx, "Echo"),
    {LSock, _} = listen(),
    Client1 = handed_off(Ctx, LSock, #{test_pid => self(), tag => 1}),
    receive {<<"made">>, 1} -> ok after 5000 -> ct:fail(not_made) end,
    ok = gen_tcp:send(Client1, <<"bad_action">>),
    ok = recv_closed(Client1),
    receive {<<"lost">>, 1} -> ok after 5000 -> ct:fail(not_lost) end,
    wait_until(fun() -> active(Ctx) =:= 0 end, closed),
    [_ | _] = [E || E = {warning, Text, #{py_reactor_context := bad_action_ctx}} <- log_events(),
                    binary:match(Text, <<"bad action">>) =/= nomatch],
    %% "close" closes normally.
    Client2 = handed_off(Ctx, LSock),
    ok = gen_tcp:send(Client2, <<"close">>),
    ok = recv_closed(Client2),
    wait_until(fun() -> active(Ctx) =:= 0 end, closed),
    ok = py_reactor_context:stop(Ctx).

stop_calls_connection_lost(_Config) ->
    Ctx = start(11, "Echo"),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {LSock, _} = listen(),
    Tags = lists:seq(1, 5),
    Clients = [begin
                   C = handed_off(Ctx, LSock, #{test_pid => self(), tag => Tag}),
                   receive {<<"made">>, Tag} -> ok after 5000 -> ct:fail({not_made, Tag}) end,
                   ok = echo(C, <<"hi">>),
                   C
               end || Tag <- Tags],
    ok = py_reactor_context:stop(Ctx),
    %% connection_lost ran for every connection before stop/1 returned.
    [receive {<<"lost">>, Tag} -> ok after 0 -> ct:fail({connection_lost_not_called, Tag}) end
     || Tag <- Tags],
    [ok = recv_closed(C) || C <- Clients],
    false = os_pid_alive(OsPid),
    ok.

stop_kills_stuck_port(_Config) ->
    Ctx = start(12, "Echo", #{stop_timeout => 500}),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {error, timeout} = py_reactor_context:exec(Ctx, <<"import time; time.sleep(60)">>, 100),
    T0 = erlang:monotonic_time(millisecond),
    ok = py_reactor_context:stop(Ctx),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    true = Elapsed < 5000,
    false = os_pid_alive(OsPid),
    false = is_process_alive(Ctx).

stats_match(_Config) ->
    Ctx = start(stats_ctx, "Echo", #{max_connections => 7}),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {LSock, _} = listen(),
    Msg = binary:copy(<<"x">>, 100),
    Clients = [handed_off(Ctx, LSock) || _ <- lists:seq(1, 3)],
    [ok = echo(C, Msg) || C <- Clients, _ <- lists:seq(1, 4)],
    #{active_connections := 3, total_connections := 3} = py_reactor_context:stats(Ctx),
    [ok = gen_tcp:close(C) || C <- Clients],
    wait_until(fun() -> active(Ctx) =:= 0 end, all_closed),
    Stats = py_reactor_context:stats(Ctx),
    ct:log("stats: ~p", [Stats]),
    #{id := stats_ctx, mode := worker, os_pid := OsPid, max_connections := 7,
      active_connections := 0, total_connections := 3, refused_handoffs := 0,
      total_requests := 12, bytes_in := 1200, bytes_out := 1200,
      python_errors := 0} = Stats,
    ok = py_reactor_context:stop(Ctx).

handoff_default(_Config) ->
    undefined = whereis(py_reactor_context_default),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    {ok, Fd} = inet:getfd(Server),
    {error, no_reactor_context} = py_reactor_context:handoff(Fd, #{}),
    {ok, Ctx} = py_reactor_context:start_link(13, worker, ctx_opts("Upper", #{default => true})),
    Ctx = whereis(py_reactor_context_default),
    {error, {already_started, Ctx}} =
        py_reactor_context:start_link(14, worker, ctx_opts("Echo", #{default => true})),
    ok = py_reactor_context:handoff(Fd, #{type => tcp}),
    ok = gen_tcp:close(Server),
    ok = echo(Client, <<"abc">>, <<"ABC">>),
    ok = py_reactor_context:stop(Ctx),
    undefined = whereis(py_reactor_context_default),
    {_Client2, Server2} = conn_pair(LSock),
    {ok, Fd2} = inet:getfd(Server2),
    {error, no_reactor_context} = py_reactor_context:handoff(Fd2, #{}),
    {error, no_reactor_context} = py_reactor_context:handoff(Ctx, Fd2, #{}),
    {error, no_reactor_context} = py_reactor_context:handoff_socket(Ctx, Server2, #{}),
    %% The socket was not closed: the caller still owns it.
    {ok, _} = inet:peername(Server2),
    ok.

handoff_errors(_Config) ->
    Ctx = start(15, "Echo"),
    {LSock, _} = listen(),
    {_Client, Server} = conn_pair(LSock),
    {ok, Fd} = inet:getfd(Server),
    {error, {bad_client_info, _}} = py_reactor_context:handoff(Ctx, Fd, #{ref => make_ref()}),
    {error, {bad_client_info, _}} = py_reactor_context:handoff(Ctx, Fd, #{f => fun() -> ok end}),
    %% A descriptor number that is not open in the VM.
    {error, {aux_socket, ebadf}} = py_reactor_context:handoff(Ctx, 100000, #{}),
    #{total_connections := 0, active_connections := 0} = py_reactor_context:stats(Ctx),
    %% A closed socket.
    {_Client2, Server2} = conn_pair(LSock),
    ok = gen_tcp:close(Server2),
    {error, _} = py_reactor_context:handoff_socket(Ctx, Server2, #{}),
    {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>),
    ok = py_reactor_context:stop(Ctx).

segfault_kills_only_the_port(_Config) ->
    process_flag(trap_exit, true),
    Other = start(other, "Upper"),
    Ctx = start(16, "Echo"),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {LSock, _} = listen(),
    OtherClient = handed_off(Other, LSock),
    Client = handed_off(Ctx, LSock),
    ok = echo(Client, <<"ping">>),
    ok = gen_tcp:send(Client, <<"crash">>),
    expect_exit(Ctx, {port_killed, sigsegv}),
    false = os_pid_alive(OsPid),
    ok = recv_closed(Client),
    %% The VM and the other context carry on.
    ok = echo(OtherClient, <<"still">>, <<"STILL">>),
    ok = py_reactor_context:stop(Other).

port_killed_externally(_Config) ->
    process_flag(trap_exit, true),
    Ctx = start(17, "Echo"),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    _ = os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    expect_exit(Ctx, {port_killed, sigkill}),
    Ctx2 = start(18, "Echo"),
    #{os_pid := OsPid2} = py_reactor_context:stats(Ctx2),
    _ = os:cmd("kill -TERM " ++ integer_to_list(OsPid2)),
    expect_exit(Ctx2, {port_killed, sigterm}).

port_exits(_Config) ->
    process_flag(trap_exit, true),
    Ctx = start(19, "Echo"),
    {error, {port_exited, 3}} = py_reactor_context:exec(Ctx, <<"import os; os._exit(3)">>),
    expect_exit(Ctx, {port_exited, 3}).

%% A context killed without running terminate/2: the runtime closes its
%% port, the port program sees end of file and exits.
context_killed_ends_port(_Config) ->
    process_flag(trap_exit, true),
    Ctx = start(20, "Echo"),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {LSock, _} = listen(),
    Client = handed_off(Ctx, LSock),
    ok = echo(Client, <<"hi">>),
    exit(Ctx, kill),
    expect_exit(Ctx, killed),
    wait_until(fun() -> not os_pid_alive(OsPid) end, port_gone),
    ok = recv_closed(Client).

%% The VM goes away: its ports see end of file and exit.
vm_death_ends_port(_Config) ->
    {ok, Peer, _Node} = peer:start_link(#{connection => standard_io,
                                          args => lists:append([["-pa", Dir] || Dir <- code:get_path()])}),
    OsPid = peer:call(Peer, ?MODULE, peer_start_context, [], 30000),
    true = is_integer(OsPid),
    true = os_pid_alive(OsPid),
    ok = peer:stop(Peer),
    wait_until(fun() -> not os_pid_alive(OsPid) end, port_gone).

%% Runs in the peer: starts a context owned by a process that stays alive,
%% returns the port's OS pid.
peer_start_context() ->
    Parent = self(),
    spawn(fun() ->
              {ok, Ctx} = py_reactor_context:start_link(peer, worker, ctx_opts("Echo")),
              Parent ! {os_pid, maps:get(os_pid, py_reactor_context:stats(Ctx))},
              receive after infinity -> ok end
          end),
    receive {os_pid, OsPid} -> OsPid after 20000 -> timeout end.

%% The record option: the port writes the session, Erlang reads it back,
%% and the port's replay runs it again with the same outcome.
recording(Config) ->
    Path = filename:join(?config(priv_dir, Config), "session.rec"),
    {error, {bad_option, {record_bytes, true}}} =
        py_reactor_context:start_link(21, worker, ctx_opts("Echo", #{record_bytes => true})),
    Ctx = start(21, "Upper", #{record => Path, record_bytes => true}),
    {LSock, _} = listen(),
    Client = handed_off(Ctx, LSock),
    ok = echo(Client, <<"recorded">>, <<"RECORDED">>),
    ok = gen_tcp:close(Client),
    wait_until(fun() -> active(Ctx) =:= 0 end, closed),
    ok = py_reactor_context:stop(Ctx),
    {ok, #{header := #{connection_bytes := true}, records := Records, truncated := false}} =
        py_reactor_recording:read(Path),
    [{setup, _, #{setup_code := _}}] = [F || {in, _, F = {setup, _, _}} <- Records],
    [{handoff, 1, #{conn_id := 1}}] = [F || {in, _, F = {handoff, _, _}} <- Records],
    [_] = [R || R = {fd, _, 1, tcp, _} <- Records],
    [<<"recorded">>, <<>>] = [B || {read, _, 1, B} <- Records],
    [<<"RECORDED">>] = [B || {write, _, 1, B} <- Records],
    [{closed, 1, eof}] = [F || {out, _, F = {closed, _, _}} <- Records],
    {'end', _, stopped} = lists:last(Records),
    %% Replayed offline by the port program.
    {0, Output} = py_reactor_test_lib:port_cli(["replay", Path, "--ignore-logs"]),
    ct:log("replay: ~ts", [Output]).

bad_frames(_Config) ->
    ok = py_reactor_test_lib:capture_logs(),
    Ctx = start(bad_frames_ctx, "Echo"),
    Port = py_reactor_test_lib:port_of(Ctx),
    %% Frames the port cannot take: it answers with frame_error and goes on.
    true = erlang:port_command(Port, <<"not a term">>),
    true = erlang:port_command(Port, term_to_binary({no_such_request, 1})),
    {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>),
    wait_until(fun() ->
                   length([E || E = {error, Text, #{py_reactor_context := bad_frames_ctx}}
                                    <- log_events(),
                                binary:match(Text, <<"refused a frame">>) =/= nomatch]) >= 1
               end, frame_errors_logged),
    %% Frames the context cannot take: logged, never a crash.
    Ctx ! {Port, {data, <<"garbage">>}},
    Ctx ! {Port, {data, term_to_binary({unknown_notice, 1})}},
    Ctx ! {Port, {data, term_to_binary({reply, 123456, ok})}},
    Ctx ! {Port, {data, term_to_binary({closed, 123456, normal})}},
    Ctx ! unexpected_message,
    gen_server:cast(Ctx, unexpected_cast),
    {error, {unexpected_call, what}} = gen_server:call(Ctx, what),
    {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>),
    true = is_process_alive(Ctx),
    ok = py_reactor_context:stop(Ctx).
