%% Faults: the VM killed, the port killed over and over under a supervisor,
%% Python errors in every callback, stop/1 with many connections, Python stuck
%% in a callback, and many processes handing off at the connection limit.
%% The Python side is test/erlang/protocols/fault_protocols.py.
-module(py_reactor_fault_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [active/1, listen/0, connect/1, accept/1, conn_pair/1, echo/2,
                              recv_closed/1, port_os_pids/0, os_pid_alive/1, wait_until/2,
                              wait_until/3, log_events/0]).

%% Connections handed off in the peer VM of vm_sigkill_closes_port_and_peers.
-define(PEER_CONNS, 5).
%% How soon the port must be gone, and its peers see the close, after the VM
%% is killed.
-define(VM_DEATH_BOUND, 1000).
%% Port deaths in port_killed_100_times.
-define(KILLS, 100).
%% Connections open when stop_with_1000_connections stops the context.
-define(STOP_CONNS, 1000).
%% Processes handing off at once in concurrent_handoffs_respect_limit, and
%% the context's limit.
-define(HANDOFF_PROCS, 50).
-define(HANDOFF_LIMIT, 10).

%% A case that hangs fails on its own, with its name, long before the run's
%% outer limit; the slowest case takes well under a minute.
suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [vm_sigkill_closes_port_and_peers,
     port_killed_100_times,
     callback_faults_close_one_connection,
     stop_with_1000_connections,
     stuck_callback_stop_and_shutdown,
     concurrent_handoffs_respect_limit].

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, _Config) ->
    py_reactor_test_lib:stop_capture_logs(),
    ok.

%% Helpers.

setup_code(Protocol) ->
    iolist_to_binary(["import fault_protocols\n", "fault_protocols.use('", Protocol, "')\n"]).

fault_opts(Protocol) ->
    fault_opts(Protocol, #{}).

fault_opts(Protocol, Extra) ->
    maps:merge(#{python_path => [py_reactor_test_lib:protocols_dir()],
                 setup_code => setup_code(Protocol)}, Extra).

start(Id, Protocol) ->
    start(Id, Protocol, #{}).

start(Id, Protocol, Extra) ->
    {ok, Ctx} = py_reactor_context:start_link(Id, worker, fault_opts(Protocol, Extra)),
    Ctx.

handed_off(Ctx, LSock) ->
    handed_off(Ctx, LSock, #{}).

handed_off(Ctx, LSock, ClientInfo) ->
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, ClientInfo),
    Client.

now_ms() ->
    erlang:monotonic_time(millisecond).

%% Open descriptors of an OS process (this VM: os:getpid()).
fd_count(OsPid) ->
    {ok, Fds} = file:list_dir("/proc/" ++ to_list(OsPid) ++ "/fd"),
    length(Fds).

vm_fd_count() ->
    fd_count(os:getpid()).

to_list(I) when is_integer(I) -> integer_to_list(I);
to_list(S) when is_list(S) -> S.

kill9(OsPid) ->
    _ = os:cmd("kill -9 " ++ to_list(OsPid)),
    ok.

contains(Text, Pattern) ->
    binary:match(Text, Pattern) =/= nomatch.

%% supervisor callback: the test supervisors of port_killed_100_times and
%% stuck_callback_stop_and_shutdown.
init({fault_sup, Intensity, Specs}) ->
    {ok, {#{strategy => one_for_one, intensity => Intensity, period => 3600}, Specs}}.

%% The pid of a supervisor's child once it runs and is not Old.
child_pid(Sup, ChildId, Old) ->
    Find = fun() ->
               case lists:keyfind(ChildId, 1, supervisor:which_children(Sup)) of
                   {_, Pid, _, _} when is_pid(Pid), Pid =/= Old -> Pid;
                   _ -> false
               end
           end,
    wait_until(fun() -> is_pid(Find()) end, {child_running, ChildId}, 30000),
    Find().

%% 1. The VM dies by SIGKILL.

%% A peer VM starts a context and hands it connections whose client ends are
%% here; `kill -9' of the peer VM ends its port within 1 s, and every client
%% sees its connection closed within that second. (vm_death_ends_port in
%% py_reactor_context_SUITE stops the peer cleanly and checks the port only.)
vm_sigkill_closes_port_and_peers(_Config) ->
    Peer = case peer:start(#{connection => standard_io,
                             args => lists:append([["-pa", Dir] || Dir <- code:get_path()])}) of
        {ok, P} -> P;
        {ok, P, _Node} -> P
    end,
    {PortOsPid, ListenPort} = peer:call(Peer, ?MODULE, peer_serve, [], 30000),
    true = os_pid_alive(PortOsPid),
    %% Not a port of this VM: the peer's.
    false = lists:member(PortOsPid, port_os_pids()),
    Clients = [connect(ListenPort) || _ <- lists:seq(1, ?PEER_CONNS)],
    Results = peer:call(Peer, ?MODULE, peer_handoff, [?PEER_CONNS], 30000),
    true = lists:duplicate(?PEER_CONNS, ok) =:= Results,
    [ok = echo(C, <<"served by the peer's port">>) || C <- Clients],
    PeerOsPid = peer:call(Peer, os, getpid, [], 30000),
    true = PeerOsPid =/= os:getpid(),
    %% Watchers note when each client sees the close and when the port's
    %% process disappears.
    Parent = self(),
    Watchers = [begin
                    W = spawn_link(fun() ->
                                       receive go -> ok end,
                                       Result = gen_tcp:recv(C, 0, 10000),
                                       Parent ! {closed, self(), Result, now_ms()}
                                   end),
                    ok = gen_tcp:controlling_process(C, W),
                    W ! go,
                    W
                end || C <- Clients],
    PortWatcher = spawn_link(fun() -> Parent ! {port_gone, self(), await_gone(PortOsPid, now_ms() + 10000)} end),
    T0 = now_ms(),
    ok = kill9(PeerOsPid),
    PortGoneAt = receive {port_gone, PortWatcher, GoneAt} -> GoneAt after 15000 -> ct:fail(port_watcher_silent) end,
    ClosedAt = [receive
                    {closed, W, Result, SeenAt} -> {Result, SeenAt}
                after 15000 ->
                    ct:fail({client_watcher_silent, W})
                end || W <- Watchers],
    true = is_integer(PortGoneAt) orelse ct:fail(port_not_gone),
    ct:log("port gone after ~b ms; clients saw the close after ~w ms",
           [PortGoneAt - T0, [At - T0 || {_, At} <- ClosedAt]]),
    case PortGoneAt - T0 of
        PortMs when PortMs =< ?VM_DEATH_BOUND -> ok;
        PortMs -> ct:fail({port_outlived_vm_ms, PortMs})
    end,
    [case {Result, At - T0} of
         {{error, closed}, Ms} when Ms =< ?VM_DEATH_BOUND -> ok;
         Other -> ct:fail({client_not_closed_in_time, Other})
     end || {Result, At} <- ClosedAt],
    false = os_pid_alive(PortOsPid),
    %% The kernel closes a dying process's descriptors (which ends the port)
    %% before the process itself becomes a zombie; on a loaded machine the
    %% VM's own exit can be the later of the two.
    true = is_integer(await_gone(list_to_integer(PeerOsPid), now_ms() + 5000)),
    ok.

%% Polls /proc until OsPid is gone; the time it went, or timeout.
await_gone(OsPid, Deadline) ->
    case os_pid_alive(OsPid) of
        false ->
            now_ms();
        true ->
            case now_ms() > Deadline of
                true -> timeout;
                false -> timer:sleep(2), await_gone(OsPid, Deadline)
            end
    end.

%% Runs in the peer: a process that stays alive holds a context and a
%% listening socket. Returns {PortOsPid, ListenPort}.
peer_serve() ->
    Parent = self(),
    _ = spawn(fun() ->
                  {ok, Ctx} = py_reactor_context:start_link(peer_fault, worker, fault_opts("Echo")),
                  #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
                  {LSock, Port} = listen(),
                  true = register(fault_peer_server, self()),
                  Parent ! {serving, OsPid, Port},
                  peer_server_loop(Ctx, LSock)
              end),
    receive {serving, OsPid, Port} -> {OsPid, Port} after 25000 -> timeout end.

peer_server_loop(Ctx, LSock) ->
    receive
        {handoff, N, From} ->
            Results = [py_reactor_context:handoff_socket(Ctx, accept(LSock), #{})
                       || _ <- lists:seq(1, N)],
            From ! {handed_off, Results},
            peer_server_loop(Ctx, LSock)
    end.

%% Runs in the peer: accepts N connections and hands them off.
peer_handoff(N) ->
    fault_peer_server ! {handoff, N, self()},
    receive {handed_off, Results} -> Results after 25000 -> timeout end.

%% 2. The port killed 100 times under a supervisor.

%% Two contexts under one supervisor; the port of one is killed 100 times,
%% by turns with SIGKILL from outside, SIGSEGV in a callback and os._exit(N)
%% in a callback. Each time the context exits with a reason naming the
%% cause, the supervisor starts a new one which serves a connection, and the
%% other context keeps serving one long-lived connection.
port_killed_100_times(_Config) ->
    PortsBefore = port_os_pids(),
    FdsBefore = vm_fd_count(),
    ProcsBefore = erlang:system_info(process_count),
    ErlPortsBefore = length(erlang:ports()),
    VictimSpec = py_reactor_context:child_spec(#{id => victim,
                                                 opts => fault_opts("Echo", #{name => fault_victim})}),
    SurvivorSpec = py_reactor_context:child_spec(#{id => survivor,
                                                   opts => fault_opts("Echo", #{name => fault_survivor})}),
    {ok, Sup} = supervisor:start_link(?MODULE, {fault_sup, 2 * ?KILLS, [VictimSpec, SurvivorSpec]}),
    VictimId = {py_reactor_context, victim},
    {LSock, _} = listen(),
    Survivor = whereis(fault_survivor),
    #{os_pid := SurvivorOsPid} = py_reactor_context:stats(Survivor),
    SurvivorClient = handed_off(Survivor, LSock),
    ok = echo(SurvivorClient, <<"long-lived">>),
    First = child_pid(Sup, VictimId, undefined),
    T0 = now_ms(),
    {Last, Killed} = lists:foldl(
        fun(I, {Ctx, Acc}) ->
            OsPid = kill_victim(I, Ctx, LSock),
            %% The other context never noticed.
            ok = echo(SurvivorClient, iolist_to_binary(io_lib:format("still here after kill ~b", [I]))),
            Next = child_pid(Sup, VictimId, Ctx),
            Next = whereis(fault_victim),
            {Next, [{Ctx, OsPid} | Acc]}
        end, {First, []}, lists:seq(1, ?KILLS)),
    ct:log("~b kills and restarts in ~b ms", [?KILLS, now_ms() - T0]),
    %% The last restart serves too.
    #{os_pid := LastOsPid, total_connections := 0} = py_reactor_context:stats(Last),
    LastClient = handed_off(Last, LSock),
    ok = echo(LastClient, <<"served after the last restart">>),
    %% 100 restarts: 101 distinct contexts, each with its own port, all
    %% but the last gone.
    {KilledCtxs, KilledOsPids} = lists:unzip(Killed),
    ?KILLS = length(lists:usort(KilledCtxs)),
    ?KILLS = length(lists:usort(KilledOsPids)),
    false = lists:member(Last, KilledCtxs),
    false = lists:member(LastOsPid, KilledOsPids),
    [] = [P || P <- KilledCtxs, is_process_alive(P)],
    [] = [P || P <- KilledOsPids, os_pid_alive(P)],
    %% The survivor is the same context with the same port and connection.
    Survivor = whereis(fault_survivor),
    #{os_pid := SurvivorOsPid, total_connections := 1, active_connections := 1} =
        py_reactor_context:stats(Survivor),
    ok = echo(SurvivorClient, <<"the end">>),
    %% The VM is fine: no port program, descriptor, process or port left
    %% behind once the supervisor is gone.
    lists:sort(PortsBefore ++ [SurvivorOsPid, LastOsPid]) =:= port_os_pids()
        orelse ct:fail({port_programs, port_os_pids(), PortsBefore}),
    unlink(Sup),
    MRef = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', MRef, process, Sup, shutdown} -> ok after 30000 -> ct:fail(sup_not_down) end,
    ok = recv_closed(SurvivorClient),
    ok = recv_closed(LastClient),
    [ok = gen_tcp:close(S) || S <- [SurvivorClient, LastClient, LSock]],
    PortsBefore = port_os_pids(),
    %% A little slack for things the test framework opens meanwhile; a leak
    %% per kill would be 100 or more.
    wait_until(fun() -> vm_fd_count() =< FdsBefore + 3 end, {fds, FdsBefore}),
    wait_until(fun() -> erlang:system_info(process_count) =< ProcsBefore + 3 end,
               {processes, ProcsBefore}),
    wait_until(fun() -> length(erlang:ports()) =< ErlPortsBefore + 3 end, {ports, ErlPortsBefore}),
    ok.

%% Serves a connection on the victim, then kills its port by cause I rem 3;
%% returns the port's OS pid once the context has exited with the reason
%% that names the cause.
kill_victim(I, Ctx, LSock) ->
    #{os_pid := OsPid, total_connections := 0} = py_reactor_context:stats(Ctx),
    Client = handed_off(Ctx, LSock),
    ok = echo(Client, <<"served">>),
    MRef = monitor(process, Ctx),
    Expected = case I rem 3 of
        0 ->
            ok = kill9(OsPid),
            {port_killed, sigkill};
        1 ->
            ok = gen_tcp:send(Client, <<"crash">>),
            {port_killed, sigsegv};
        2 ->
            Status = 1 + I rem 100,
            ok = gen_tcp:send(Client, iolist_to_binary(["exit ", integer_to_list(Status)])),
            {port_exited, Status}
    end,
    receive
        {'DOWN', MRef, process, Ctx, Expected} -> ok;
        {'DOWN', MRef, process, Ctx, Other} -> ct:fail({kill, I, Other, expected, Expected})
    after 10000 ->
        ct:fail({context_not_down, I, Expected})
    end,
    false = os_pid_alive(OsPid),
    ok = recv_closed(Client),
    ok = gen_tcp:close(Client),
    OsPid.

%% 3. Python errors in every callback.

%% Each fault closes its own connection only, is logged once (the traceback
%% at error, a bad action at warning), moves python_errors by exactly one,
%% and the next connection is served. python_exception_closes_connection and
%% bad_action_closes_connection in py_reactor_context_SUITE cover a raise
%% and a returned 42 in data_received; this covers the factory and every
%% callback, and every kind of bad return.
callback_faults_close_one_connection(_Config) ->
    ok = py_reactor_test_lib:capture_logs(),
    Ctx = start(fault_cb_ctx, "Faulty"),
    {LSock, _} = listen(),
    Bystander = handed_off(Ctx, LSock),
    ok = echo(Bystander, <<"before the faults">>),
    %% {Fault, Trigger, connection_lost runs, what is logged}
    Faults = [{factory_raise, none, false, {traceback, <<"fault-in-factory_raise">>}},
              {factory_none, none, false, {traceback, <<"returned NoneType, not an erlang.reactor.Protocol">>}},
              {made_raise, none, true, {traceback, <<"fault-in-made_raise">>}},
              {data_raise, data, true, {traceback, <<"fault-in-data_raise">>}},
              {write_raise, data, true, {traceback, <<"fault-in-write_raise">>}},
              {lost_raise, data, true, {traceback, <<"fault-in-lost_raise">>}},
              {data_unknown, data, true, {bad_action, <<"'explode'">>}},
              {data_wrong_type, data, true, {bad_action, <<"b'continue'">>}},
              {data_none, data, true, {bad_action, <<"None">>}},
              {write_wrong_type, data, true, {bad_action, <<"42">>}},
              {write_none, data, true, {bad_action, <<"None">>}}],
    [callback_fault(Ctx, LSock, Bystander, Fault) || Fault <- Faults],
    N = length(Faults),
    #{python_errors := N, active_connections := 1, total_connections := Total} =
        py_reactor_context:stats(Ctx),
    %% The bystander, one connection per fault and one after each.
    Total = 1 + 2 * N,
    ok = echo(Bystander, <<"after the faults">>),
    ok = py_reactor_context:stop(Ctx).

callback_fault(Ctx, LSock, Bystander, {Fault, Trigger, LostRuns, Logged}) ->
    _ = log_events(),
    #{python_errors := Errors0, active_connections := 1} = py_reactor_context:stats(Ctx),
    Tag = atom_to_binary(Fault),
    case Fault of
        factory_raise -> {ok, none} = py_reactor_context:call(Ctx, fault_protocols, fail_factory, [<<"raise">>]);
        factory_none -> {ok, none} = py_reactor_context:call(Ctx, fault_protocols, fail_factory, [<<"none">>]);
        _ -> ok
    end,
    Client = handed_off(Ctx, LSock, #{fault => Fault, test_pid => self(), tag => Fault}),
    case Trigger of
        data -> ok = gen_tcp:send(Client, <<"trigger">>);
        none -> ok
    end,
    ok = recv_closed(Client),
    ok = gen_tcp:close(Client),
    wait_until(fun() -> active(Ctx) =:= 1 end, {closed, Fault}),
    #{python_errors := Errors1} = py_reactor_context:stats(Ctx),
    {Fault, 1} = {Fault, Errors1 - Errors0},
    %% The stats reply came after every notice of the closed connection:
    %% its messages from Python and its log events are all here by now.
    %% The tag, an atom, comes back an atom.
    Made = receive {<<"made">>, Fault} -> true after 0 -> false end,
    Lost = receive {<<"lost">>, Fault} -> true after 0 -> false end,
    {Fault, LostRuns, LostRuns} = {Fault, Made, Lost},
    Events = [{Level, Text} || {Level, Text, #{py_reactor_context := fault_cb_ctx}} <- log_events(),
                               logger:compare_levels(Level, warning) =/= lt],
    case Logged of
        {traceback, Marker} ->
            case [E || E = {_, Text} <- Events, contains(Text, Marker)] of
                [{error, Text}] ->
                    true = contains(Text, <<"Traceback (most recent call last)">>);
                Other ->
                    ct:fail({traceback_not_logged_once, Fault, Other, Events})
            end;
        {bad_action, Shown} ->
            Pattern = <<"bad action: ", Shown/binary>>,
            case [E || E = {_, Text} <- Events, contains(Text, <<"bad action">>)] of
                [{warning, Text}] ->
                    true = contains(Text, Pattern);
                Other ->
                    ct:fail({bad_action_not_logged_once, Fault, Other, Events})
            end
    end,
    %% Nothing else of warning level or above for this connection.
    1 = length(Events),
    %% The next connection is served, and so is the one that was there.
    Next = handed_off(Ctx, LSock),
    ok = echo(Next, <<"next">>),
    ok = gen_tcp:close(Next),
    wait_until(fun() -> active(Ctx) =:= 1 end, {next_closed, Fault}),
    ok = echo(Bystander, Tag),
    ok.

%% 4. stop/1 with 1000 open connections.

%% connection_lost runs for each (each one sends a message from Python,
%% delivered before stop/1 returns), every client sees the close, the port
%% has exited, and once the clients are closed the VM has exactly the
%% descriptors it had before: handoff_socket closed the VM's copies.
stop_with_1000_connections(_Config) ->
    FdsBefore = vm_fd_count(),
    Ctx = start(fault_stop_ctx, "Echo", #{max_connections => ?STOP_CONNS, stop_timeout => 30000}),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {LSock, _} = listen(),
    Tags = lists:seq(1, ?STOP_CONNS),
    Clients = [handed_off(Ctx, LSock, #{test_pid => self(), tag => Tag}) || Tag <- Tags],
    Made = [receive {<<"made">>, Tag} -> Tag after 10000 -> ct:fail({not_made, Tag}) end
            || Tag <- Tags],
    Tags = lists:sort(Made),
    [ok = echo(C, <<"ping">>) || C <- Clients],
    #{active_connections := ?STOP_CONNS, total_connections := ?STOP_CONNS} =
        py_reactor_context:stats(Ctx),
    %% The port holds a descriptor per connection, the VM only the client
    %% ends (it would hold 2000 more if it kept the handed-off sockets).
    FdsOpen = vm_fd_count(),
    PortFds = fd_count(OsPid),
    ct:log("descriptors: VM ~b before, ~b with ~b connections; port ~b",
           [FdsBefore, FdsOpen, ?STOP_CONNS, PortFds]),
    true = FdsOpen < FdsBefore + ?STOP_CONNS + 50,
    true = PortFds >= ?STOP_CONNS,
    T0 = now_ms(),
    ok = py_reactor_context:stop(Ctx),
    ct:log("stop/1 with ~b connections: ~b ms", [?STOP_CONNS, now_ms() - T0]),
    false = os_pid_alive(OsPid),
    false = is_process_alive(Ctx),
    %% Every connection_lost ran before stop/1 returned.
    Lost = lost_tags([]),
    Tags = lists:sort(Lost),
    [{error, closed} = gen_tcp:recv(C, 0, 5000) || C <- Clients],
    [ok = gen_tcp:close(C) || C <- Clients],
    ok = gen_tcp:close(LSock),
    wait_until(fun() -> vm_fd_count() =< FdsBefore end, {fds_back_to, FdsBefore}).

lost_tags(Acc) ->
    receive {<<"lost">>, Tag} -> lost_tags([Tag | Acc]) after 0 -> Acc end.

%% 5. Python stuck in a callback.

%% With the loop stuck in a callback (an endless loop, or a long sleep) the
%% port cannot answer `stop'. stop/1 waits stop_timeout, then kills the port
%% (SIGKILL, so connection_lost does not run; the kernel closes the
%% connections). A supervisor's shutdown, with the child spec's default
%% timeout (stop_timeout + 2000 ms), ends the context the same way, within
%% that timeout. With shutdown => brutal_kill the context is killed at once
%% and the port's watchdog ends the port 2 s after the VM closed it.
stuck_callback_stop_and_shutdown(_Config) ->
    StopTimeout = 500,
    [stuck_case(How, Stuck, StopTimeout)
     || How <- [stop, supervisor, brutal_kill], Stuck <- [<<"spin">>, <<"sleep">>]],
    ok.

stuck_case(How, Stuck, StopTimeout) ->
    Opts = fault_opts("Echo", #{stop_timeout => StopTimeout}),
    {Ctx, Sup, Spec} = case How of
        stop ->
            {start(stuck, "Echo", #{stop_timeout => StopTimeout}), undefined, undefined};
        _ ->
            Args0 = #{id => stuck, opts => Opts},
            Args = case How of
                brutal_kill -> Args0#{shutdown => brutal_kill};
                supervisor -> Args0
            end,
            Spec0 = py_reactor_context:child_spec(Args),
            {ok, Sup0} = supervisor:start_link(?MODULE, {fault_sup, 1, [Spec0]}),
            {child_pid(Sup0, {py_reactor_context, stuck}, undefined), Sup0, Spec0}
    end,
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    {LSock, _} = listen(),
    Client = handed_off(Ctx, LSock, #{test_pid => self(), tag => stuck}),
    ok = echo(Client, <<"ping">>),
    ok = gen_tcp:send(Client, Stuck),
    receive {<<"stuck">>, stuck} -> ok after 10000 -> ct:fail(not_stuck) end,
    %% The loop is stuck: it answered a moment ago and does not now.
    {error, timeout} = py_reactor_context:eval(Ctx, <<"1">>, 300),
    MRef = monitor(process, Ctx),
    T0 = now_ms(),
    case How of
        stop ->
            ok = py_reactor_context:stop(Ctx);
        _ ->
            ok = supervisor:terminate_child(Sup, {py_reactor_context, stuck})
    end,
    Elapsed = now_ms() - T0,
    Reason = receive {'DOWN', MRef, process, Ctx, R} -> R after 10000 -> ct:fail(not_down) end,
    ct:log("~p, ~s: the context ended in ~b ms (~p)", [How, Stuck, Elapsed, Reason]),
    case How of
        brutal_kill ->
            killed = Reason,
            %% The context is gone at once; the port outlives it by the
            %% watchdog's grace period (2 s), not more.
            PortGone = await_gone(OsPid, T0 + 10000),
            true = is_integer(PortGone),
            PortMs = PortGone - T0,
            ct:log("~p, ~s: the port ended ~b ms after the kill", [How, Stuck, PortMs]),
            true = PortMs =< 2000 + 1500;
        _ ->
            %% The context stopped cleanly (not killed by its supervisor),
            %% after waiting stop_timeout for the port to answer, and well
            %% within the child spec's shutdown; its port is gone.
            Expected = case How of stop -> normal; supervisor -> shutdown end,
            Expected = Reason,
            case Spec of
                undefined -> ok;
                #{shutdown := Shutdown} -> Shutdown = StopTimeout + 2000
            end,
            true = Elapsed >= StopTimeout,
            true = Elapsed < StopTimeout + 1500,
            false = os_pid_alive(OsPid),
            %% Killed in the callback: connection_lost never ran (the
            %% context delivers what Python sends until the port is gone).
            receive {<<"lost">>, stuck} -> ct:fail(connection_lost_ran) after 0 -> ok end
    end,
    %% The kernel closed the connection with the port.
    ok = recv_closed(Client),
    [ok = gen_tcp:close(S) || S <- [Client, LSock]],
    case Sup of
        undefined ->
            ok;
        _ ->
            unlink(Sup),
            exit(Sup, shutdown)
    end,
    ok.

%% 6. 50 processes hand off at once to a context that takes 10.

%% Phase 1: 50 processes hand off at the same moment and keep what they get:
%% exactly 10 are accepted, 40 refused with {error, max_connections}, and
%% the refused callers still own working sockets. Phase 2: the accepted ones
%% finish and close while the refused ones retry until accepted. Throughout,
%% stats never show more than 10 active connections, Python never has more
%% than 10 connections made and not lost, every refusal is counted in
%% refused_handoffs, and accepted + refused = attempts.
concurrent_handoffs_respect_limit(_Config) ->
    Ctx = start(fault_limit_ctx, "Echo", #{max_connections => ?HANDOFF_LIMIT}),
    {LSock, _} = listen(),
    Parent = self(),
    Workers = [begin
                   {Client, Server} = conn_pair(LSock),
                   W = spawn_link(fun() -> handoff_worker(Ctx, Parent, I) end),
                   ok = gen_tcp:controlling_process(Client, W),
                   ok = gen_tcp:controlling_process(Server, W),
                   W ! {sockets, Client, Server},
                   W
               end || I <- lists:seq(1, ?HANDOFF_PROCS)],
    Sampler = spawn_link(fun() -> sample_active(Ctx, 0, 0) end),
    %% Phase 1.
    [W ! go || W <- Workers],
    First = [receive {first, W, Result} -> Result after 30000 -> ct:fail({no_first, W}) end
             || W <- Workers],
    Accepted1 = length([ok || ok <- First]),
    Refused1 = length([R || R = {error, max_connections} <- First]),
    {?HANDOFF_LIMIT, ?HANDOFF_PROCS} = {Accepted1, Accepted1 + Refused1},
    #{active_connections := ?HANDOFF_LIMIT, total_connections := ?HANDOFF_LIMIT,
      refused_handoffs := Refused1} = py_reactor_context:stats(Ctx),
    wait_until(fun() -> py_reactor_context:eval(Ctx, <<"fault_protocols.ACTIVE">>) =:= {ok, ?HANDOFF_LIMIT} end,
               python_active),
    %% Phase 2.
    [W ! finish || W <- Workers],
    Reports = [receive {done, W, Report} -> Report after 60000 -> ct:fail({no_report, W}) end
               || W <- Workers],
    Sampler ! {stop, self()},
    {MaxActive, Samples} = receive {sampled, Sampler, Max, N} -> {Max, N} after 30000 -> ct:fail(no_samples) end,
    Attempts = lists:sum([A || #{attempts := A} <- Reports]),
    Refused = lists:sum([R || #{refused := R} <- Reports]),
    Accepted = length([ok || #{accepted := true} <- Reports]),
    MaxSeenByCallers = lists:max([M || #{max_active_seen := M} <- Reports]),
    wait_until(fun() -> active(Ctx) =:= 0 end, all_closed),
    Stats = py_reactor_context:stats(Ctx),
    {ok, Peak} = py_reactor_context:eval(Ctx, <<"fault_protocols.PEAK">>),
    {ok, 0} = py_reactor_context:eval(Ctx, <<"fault_protocols.ACTIVE">>),
    ct:log("~b attempts, ~b accepted, ~b refused; ~b stats samples, at most ~b active "
           "(~b after each attempt); Python peak ~b; stats ~p",
           [Attempts, Accepted, Refused, Samples, MaxActive, MaxSeenByCallers, Peak, Stats]),
    ?HANDOFF_PROCS = Accepted,
    Attempts = Accepted + Refused,
    true = Refused >= Refused1,
    #{total_connections := Accepted, refused_handoffs := Refused, active_connections := 0,
      python_errors := 0} = Stats,
    true = Samples > 0,
    true = MaxActive =< ?HANDOFF_LIMIT,
    true = MaxSeenByCallers =< ?HANDOFF_LIMIT,
    ?HANDOFF_LIMIT = Peak,
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:stop(Ctx).

%% One caller: hands its socket off at `go' and reports; at `finish', if it
%% was accepted, checks the connection is served and closes it, otherwise
%% retries until accepted (then does the same); reports its counts.
handoff_worker(Ctx, Parent, I) ->
    {Client, Server} = receive {sockets, C, S} -> {C, S} end,
    receive go -> ok end,
    First = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    Seen0 = active(Ctx),
    Parent ! {first, self(), First},
    Refused0 = case First of
        ok ->
            0;
        {error, max_connections} ->
            %% The caller still owns a working socket.
            ok = gen_tcp:send(Client, <<"direct">>),
            {ok, <<"direct">>} = gen_tcp:recv(Server, 6, 5000),
            1
    end,
    receive finish -> ok end,
    {Refused, Seen} = case First of
        ok -> {Refused0, Seen0};
        _ -> retry_handoff(Ctx, Server, Refused0, Seen0, now_ms() + 30000)
    end,
    ok = echo(Client, iolist_to_binary(io_lib:format("worker ~b", [I]))),
    ok = gen_tcp:close(Client),
    Parent ! {done, self(), #{accepted => true, refused => Refused, attempts => Refused + 1,
                              max_active_seen => Seen}}.

%% Retries until accepted; after each attempt, samples active_connections.
retry_handoff(Ctx, Server, Refused, Seen, Deadline) ->
    Result = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    Seen1 = max(Seen, active(Ctx)),
    case Result of
        ok ->
            {Refused, Seen1};
        {error, max_connections} ->
            case now_ms() > Deadline of
                true -> exit({never_accepted, Refused});
                false -> timer:sleep(1), retry_handoff(Ctx, Server, Refused + 1, Seen1, Deadline)
            end
    end.

%% Samples active_connections until told to stop; reports the largest seen
%% and how many samples it took.
sample_active(Ctx, Max, N) ->
    receive
        {stop, From} -> From ! {sampled, self(), Max, N}
    after 0 ->
        #{active_connections := Active} = py_reactor_context:stats(Ctx),
        sample_active(Ctx, max(Max, Active), N + 1)
    end.
