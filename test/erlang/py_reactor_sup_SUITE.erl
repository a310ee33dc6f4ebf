%% The py_reactor application and its supervisor, with the real port.
-module(py_reactor_sup_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [ctx_opts/1, ctx_opts/2, listen/0, conn_pair/1, echo/2, echo/3,
                              recv_closed/1, os_pid_alive/1, wait_until/2]).

%% A case that hangs fails on its own, with its name, long before the run's
%% outer limit; the slowest case takes well under a minute.
suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [application_start_stop,
     start_context_failure,
     segfault_restarts_context,
     own_supervisor].

init_per_testcase(_Case, Config) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_testcase(_Case, _Config) ->
    ok = application:stop(py_reactor),
    ok.

handed_off(Ctx, LSock) ->
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    Client.

application_start_stop(_Config) ->
    Sup = whereis(py_reactor_sup),
    true = is_pid(Sup),
    [] = py_reactor_sup:which_contexts(),
    {ok, A} = py_reactor_sup:start_context(a, worker, ctx_opts("Echo")),
    {ok, B} = py_reactor_sup:start_context(b, subinterp, ctx_opts("Upper")),
    [{a, A}, {b, B}] = lists:sort(py_reactor_sup:which_contexts()),
    {error, {already_started, A}} = py_reactor_sup:start_context(a, worker, ctx_opts("Echo")),
    #{os_pid := OsPidA} = py_reactor_context:stats(A),
    #{os_pid := OsPidB} = py_reactor_context:stats(B),
    ok = py_reactor_sup:stop_context(a),
    {error, not_found} = py_reactor_sup:stop_context(a),
    false = os_pid_alive(OsPidA),
    [{b, B}] = py_reactor_sup:which_contexts(),
    %% stop/1 on a supervised context: it stays stopped (transient).
    ok = py_reactor_context:stop(B),
    false = os_pid_alive(OsPidB),
    [{b, undefined}] = py_reactor_sup:which_contexts(),
    ok = py_reactor_sup:stop_context(b),
    %% Stopping the application stops the ports of its contexts.
    {ok, C} = py_reactor_sup:start_context(c, worker),
    #{os_pid := OsPidC} = py_reactor_context:stats(C),
    ok = application:stop(py_reactor),
    false = os_pid_alive(OsPidC),
    {ok, _} = application:ensure_all_started(py_reactor).

start_context_failure(_Config) ->
    {error, {python, <<"RuntimeError">>, <<"no">>, _}} =
        py_reactor_sup:start_context(bad, worker, #{setup_code => <<"raise RuntimeError('no')">>}),
    [] = py_reactor_sup:which_contexts(),
    {error, {bad_mode, nope}} = py_reactor_sup:start_context(bad, nope, #{}),
    [] = py_reactor_sup:which_contexts(),
    %% The same id works once the setup is fixed.
    {ok, Pid} = py_reactor_sup:start_context(bad, worker, #{setup_code => <<"ok = 1">>}),
    [{bad, Pid}] = py_reactor_sup:which_contexts(),
    ok = py_reactor_sup:stop_context(bad).

%% A protocol that segfaults kills its port, not the VM; the context exits
%% with {port_killed, sigsegv} and the supervisor restarts it, serving again.
segfault_restarts_context(_Config) ->
    {ok, Other} = py_reactor_sup:start_context(other, worker, ctx_opts("Upper")),
    {ok, Ctx} = py_reactor_sup:start_context(seg, worker, ctx_opts("Echo", #{name => seg_ctx})),
    Ctx = whereis(seg_ctx),
    #{os_pid := OsPid} = py_reactor_context:stats(seg_ctx),
    {LSock, _} = listen(),
    OtherClient = handed_off(Other, LSock),
    Client = handed_off(seg_ctx, LSock),
    ok = echo(Client, <<"ping">>),
    MRef = monitor(process, Ctx),
    ok = gen_tcp:send(Client, <<"crash">>),
    receive
        {'DOWN', MRef, process, Ctx, Reason} -> {port_killed, sigsegv} = Reason
    after 10000 ->
        ct:fail(context_not_down)
    end,
    false = os_pid_alive(OsPid),
    ok = recv_closed(Client),
    %% Restarted under the same name, with a new port.
    wait_until(fun() ->
                   case whereis(seg_ctx) of
                       undefined -> false;
                       Ctx -> false;
                       _ -> true
                   end
               end, restarted),
    Ctx2 = whereis(seg_ctx),
    [Ctx2] = [P || {seg, P} <- py_reactor_sup:which_contexts()],
    #{os_pid := OsPid2, total_connections := 0} = py_reactor_context:stats(seg_ctx),
    true = OsPid2 =/= OsPid,
    Client2 = handed_off(seg_ctx, LSock),
    ok = echo(Client2, <<"served again">>),
    %% The other context never noticed.
    Other = proplists:get_value(other, py_reactor_sup:which_contexts()),
    ok = echo(OtherClient, <<"fine">>, <<"FINE">>),
    ok = py_reactor_sup:stop_context(seg),
    ok = py_reactor_sup:stop_context(other).

own_supervisor(_Config) ->
    Spec = py_reactor_context:child_spec(#{id => mine, opts => ctx_opts("Echo")}),
    #{id := {py_reactor_context, mine}, restart := transient, shutdown := 7000,
      start := {py_reactor_context, start_link, [mine, worker, _]}} = Spec,
    {ok, Sup} = supervisor:start_link(?MODULE, [Spec]),
    [{_, Ctx, worker, _}] = supervisor:which_children(Sup),
    {ok, 7} = py_reactor_context:eval(Ctx, <<"3 + 4">>),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    unlink(Sup),
    MRef = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', MRef, process, Sup, shutdown} -> ok after 10000 -> ct:fail(sup_not_down) end,
    false = os_pid_alive(OsPid).

%% supervisor callback for own_supervisor/1.
init([Spec]) ->
    {ok, {#{strategy => one_for_one, intensity => 1, period => 5}, [Spec]}}.
