%% Listeners (py_reactor) against real sockets and real port programs, in
%% both accept modes: placement, back-pressure, suspend and resume, a
%% context killed, graceful stop, supervision, Unix sockets, bad options.
-module(py_reactor_listener_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [ctx_opts/1, ctx_opts/2, echo/2, recv_closed/1, os_pid_alive/1,
                              wait_until/2]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [{group, vm}, {group, port}, own_supervisor, unix_socket, bad_options].

groups() ->
    Cases = [spreads_over_contexts, limit_holds_clients_in_backlog,
             context_limit_holds_clients_in_backlog, suspend_and_resume,
             killed_context_is_replaced, graceful_stop, client_info],
    [{vm, [], Cases}, {port, [], Cases}].

init_per_group(Mode, Config) ->
    [{accept, Mode} | Config].

end_per_group(_Mode, _Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_testcase(_Case, _Config) ->
    ok = application:stop(py_reactor).

%% Helpers.

start(Name, Config, Extra) ->
    Opts = maps:merge(#{ip => {127, 0, 0, 1},
                        contexts => 2,
                        context_opts => ctx_opts("Echo"),
                        accept => ?config(accept, Config)}, Extra),
    {ok, _} = py_reactor:start_listener(Name, Opts),
    py_reactor:get_port(Name).

connect(Port) ->
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 5000),
    Sock.

%% Sends Data and checks that no answer comes for a while: the client is
%% connected (the kernel completed the handshake) but not served.
not_served(Sock, Data) ->
    ok = gen_tcp:send(Sock, Data),
    {error, timeout} = gen_tcp:recv(Sock, 0, 500),
    ok.

%% The answer to what not_served/2 sent.
served_late(Sock, Data) ->
    {ok, Data} = gen_tcp:recv(Sock, byte_size(Data), 10000),
    ok.

actives(Name) ->
    lists:sort([A || #{active_connections := A} <- maps:get(contexts, py_reactor:info(Name))]).

%% Cases run in both accept modes.

spreads_over_contexts(Config) ->
    %% With accept => port the kernel picks the accepting port; a limit of
    %% 4 gives each port a share of 2, so both must serve.
    Max = case ?config(accept, Config) of vm -> 100; port -> 4 end,
    Port = start(?FUNCTION_NAME, Config, #{max_connections => Max}),
    %% One after the other: each is placed knowing where the previous went
    %% (acceptors placing at the same instant read the same counts).
    Clients = [begin C = connect(Port), ok = echo(C, <<"hello">>), C end
               || _ <- lists:seq(1, 4)],
    [2, 2] = actives(?FUNCTION_NAME),
    #{status := running, active_connections := 4, total_connections := 4,
      accept := Mode, port := Port, max_connections := Max, contexts := [_, _]} =
        py_reactor:info(?FUNCTION_NAME),
    Mode = ?config(accept, Config),
    [ok = gen_tcp:close(C) || C <- Clients],
    wait_until(fun() -> maps:get(active_connections, py_reactor:info(?FUNCTION_NAME)) =:= 0 end,
               all_closed),
    ok = py_reactor:stop_listener(?FUNCTION_NAME).

limit_holds_clients_in_backlog(Config) ->
    Port = start(?FUNCTION_NAME, Config, #{max_connections => 2}),
    C1 = connect(Port),
    ok = echo(C1, <<"one">>),
    C2 = connect(Port),
    ok = echo(C2, <<"two">>),
    %% The third connects (the backlog holds it) but is not served...
    C3 = connect(Port),
    ok = not_served(C3, <<"three">>),
    #{active_connections := 2, total_connections := 2} = py_reactor:info(?FUNCTION_NAME),
    %% ...until one closes: then it is, without being refused.
    ok = gen_tcp:close(C1),
    ok = served_late(C3, <<"three">>),
    ok = echo(C2, <<"still">>),
    #{active_connections := 2, total_connections := 3} = py_reactor:info(?FUNCTION_NAME),
    %% Raising the limit serves a waiting client at once.
    C4 = connect(Port),
    ok = not_served(C4, <<"four">>),
    ok = py_reactor:set_max_connections(?FUNCTION_NAME, 3),
    ok = served_late(C4, <<"four">>),
    #{max_connections := 3} = py_reactor:info(?FUNCTION_NAME),
    ok = py_reactor:stop_listener(?FUNCTION_NAME).

%% Each context's own max_connections holds clients back the same way.
context_limit_holds_clients_in_backlog(Config) ->
    Port = start(?FUNCTION_NAME, Config,
                 #{context_opts => ctx_opts("Echo", #{max_connections => 1})}),
    C1 = connect(Port),
    ok = echo(C1, <<"one">>),
    C2 = connect(Port),
    ok = echo(C2, <<"two">>),
    [1, 1] = actives(?FUNCTION_NAME),
    C3 = connect(Port),
    ok = not_served(C3, <<"three">>),
    ok = gen_tcp:close(C2),
    ok = served_late(C3, <<"three">>),
    [1, 1] = actives(?FUNCTION_NAME),
    #{active_connections := 2, total_connections := 3} = py_reactor:info(?FUNCTION_NAME),
    #{contexts := Stats} = py_reactor:info(?FUNCTION_NAME),
    0 = lists:sum([R || #{refused_handoffs := R} <- Stats]),
    ok = py_reactor:stop_listener(?FUNCTION_NAME).

suspend_and_resume(Config) ->
    Port = start(?FUNCTION_NAME, Config, #{}),
    C1 = connect(Port),
    ok = echo(C1, <<"before">>),
    ok = py_reactor:suspend_listener(?FUNCTION_NAME),
    #{status := suspended} = py_reactor:info(?FUNCTION_NAME),
    C2 = connect(Port),
    ok = not_served(C2, <<"held">>),
    %% Open connections keep being served.
    ok = echo(C1, <<"during">>),
    ok = py_reactor:resume_listener(?FUNCTION_NAME),
    #{status := running} = py_reactor:info(?FUNCTION_NAME),
    ok = served_late(C2, <<"held">>),
    #{active_connections := 2, total_connections := 2} = py_reactor:info(?FUNCTION_NAME),
    ok = py_reactor:stop_listener(?FUNCTION_NAME).

killed_context_is_replaced(Config) ->
    Port = start(?FUNCTION_NAME, Config, #{max_connections => 4}),
    Clients = [begin C = connect(Port), ok = echo(C, <<"hi">>), C end
               || _ <- lists:seq(1, 4)],
    [2, 2] = actives(?FUNCTION_NAME),
    #{contexts := [#{os_pid := Victim, id := VictimId}, #{os_pid := Survivor}]} =
        py_reactor:info(?FUNCTION_NAME),
    "" = os:cmd("kill -9 " ++ integer_to_list(Victim)),
    %% The victim's two clients are closed; the survivor's keep being served.
    Dead = [C || C <- Clients, gen_tcp:send(C, <<"x">>) =:= ok,
                 case gen_tcp:recv(C, 1, 5000) of
                     {ok, <<"x">>} -> false;
                     {error, _} -> true
                 end],
    2 = length(Dead),
    wait_until(fun() -> not os_pid_alive(Victim) end, victim_gone),
    Alive = Clients -- Dead,
    [ok = echo(C, <<"fine">>) || C <- Alive],
    %% Replaced: two contexts again, the survivor unchanged, counts exact.
    wait_until(fun() ->
                   case py_reactor:info(?FUNCTION_NAME) of
                       #{contexts := [_, _] = Stats} ->
                           lists:sort([P || #{os_pid := P} <- Stats]) =/=
                               lists:sort([Victim, Survivor]);
                       _ ->
                           false
                   end
               end, context_replaced),
    #{contexts := Stats, active_connections := 2, total_connections := 4} =
        py_reactor:info(?FUNCTION_NAME),
    [#{total_connections := 0}] = [S || S = #{id := Id} <- Stats, Id =:= VictimId],
    [#{active_connections := 2}] = [S || S = #{os_pid := P} <- Stats, P =:= Survivor],
    %% The freed places serve new clients.
    New = [connect(Port) || _ <- lists:seq(1, 2)],
    [ok = echo(C, <<"new">>) || C <- New],
    #{active_connections := 4, total_connections := 6} = py_reactor:info(?FUNCTION_NAME),
    ok = py_reactor:stop_listener(?FUNCTION_NAME).

graceful_stop(Config) ->
    Port = start(?FUNCTION_NAME, Config, #{drain_timeout => 60000}),
    Slow = connect(Port),
    ok = echo(Slow, <<"working">>),
    Self = self(),
    Stopper = spawn_link(fun() -> Self ! {stopped, py_reactor:stop_listener(graceful_stop)} end),
    wait_until(fun() -> maps:get(status, py_reactor:info(?FUNCTION_NAME)) =:= stopping end,
               stopping),
    %% The slow connection is still served while the listener drains...
    ok = echo(Slow, <<"still working">>),
    receive {stopped, _} -> ct:fail(stopped_before_drained) after 200 -> ok end,
    %% ...and the stop completes once it has finished.
    ok = gen_tcp:close(Slow),
    receive {stopped, ok} -> ok after 30000 -> ct:fail({not_stopped, Stopper}) end,
    {error, not_found} = py_reactor:info(?FUNCTION_NAME),
    {error, not_found} = py_reactor:stop_listener(?FUNCTION_NAME),
    %% A connection still open at drain_timeout is closed.
    Port2 = start(?FUNCTION_NAME, Config, #{drain_timeout => 100}),
    Stuck = connect(Port2),
    ok = echo(Stuck, <<"idle">>),
    ok = py_reactor:stop_listener(?FUNCTION_NAME),
    ok = recv_closed(Stuck).

client_info(Config) ->
    Port = start(?FUNCTION_NAME, Config, #{}),
    C = connect(Port),
    {ok, {_, LocalPort}} = inet:sockname(C),
    ok = gen_tcp:send(C, <<"info">>),
    {ok, Text} = gen_tcp:recv(C, 0, 5000),
    Expected = iolist_to_binary(
        io_lib:format("(['addr', 'conn_id', 'port', 'reactor_pid', 'type'], '127.0.0.1', ~b, "
                      "'tcp', True)", [LocalPort])),
    Expected = Text,
    ok = py_reactor:stop_listener(?FUNCTION_NAME).

%% Cases run once.

own_supervisor(_Config) ->
    Spec = py_reactor:child_spec(mine, #{ip => {127, 0, 0, 1}, contexts => 2,
                                         context_opts => ctx_opts("Echo")}),
    #{id := {py_reactor_listener, mine}, type := supervisor} = Spec,
    {ok, Sup} = supervisor:start_link(?MODULE, [Spec]),
    [{{py_reactor_listener, mine}, Listener, supervisor, _}] = supervisor:which_children(Sup),
    true = is_pid(Listener),
    C = connect(py_reactor:get_port(mine)),
    ok = echo(C, <<"mine">>),
    #{active_connections := 1} = py_reactor:info(mine),
    ok = gen_tcp:close(C),
    ok = py_reactor:stop_listener(mine),
    [{{py_reactor_listener, mine}, undefined, supervisor, _}] = supervisor:which_children(Sup),
    {error, not_found} = py_reactor:info(mine),
    unlink(Sup),
    exit(Sup, shutdown).

unix_socket(_Config) ->
    [unix_socket_in(Mode) || Mode <- [vm, port]],
    ok.

unix_socket_in(Mode) ->
    Path = filename:join("/tmp", lists:concat(["py_reactor_listener_", os:getpid(), "_", Mode,
                                               ".sock"])),
    _ = file:delete(Path),
    {ok, _} = py_reactor:start_listener(unix, #{ip => {local, Path}, contexts => 2, accept => Mode,
                                                context_opts => ctx_opts("Echo")}),
    {ok, C} = gen_tcp:connect({local, Path}, 0, [local, binary, {active, false}], 5000),
    ok = echo(C, <<"over a unix socket">>),
    ok = gen_tcp:send(C, <<"info">>),
    {ok, Text} = gen_tcp:recv(C, 0, 5000),
    {match, _} = re:run(Text, "'unix', True\\)$"),
    #{ip := {local, _}, accept := Mode, active_connections := 1} = py_reactor:info(unix),
    ok = gen_tcp:close(C),
    ok = py_reactor:stop_listener(unix),
    {error, enoent} = file:read_file_info(Path).

bad_options(_Config) ->
    {error, {unknown_option, colour}} = py_reactor:start_listener(b, #{colour => red}),
    {error, {bad_option, {port, -1}}} = py_reactor:start_listener(b, #{port => -1}),
    {error, {bad_option, {accept, maybe}}} = py_reactor:start_listener(b, #{accept => maybe}),
    {error, {bad_option, {contexts, 0}}} = py_reactor:start_listener(b, #{contexts => 0}),
    {error, {bad_option, {max_connections, 0}}} =
        py_reactor:start_listener(b, #{max_connections => 0}),
    {error, {bad_option, {context_opts, #{name := x}}}} =
        py_reactor:start_listener(b, #{context_opts => #{name => x}}),
    {error, {python, <<"RuntimeError">>, <<"no">>, _}} =
        py_reactor:start_listener(b, #{contexts => 1,
                                       context_opts => #{setup_code => <<"raise RuntimeError('no')">>}}),
    {error, {unknown_option, nope}} =
        py_reactor:start_listener(b, #{contexts => 1, context_opts => #{nope => 1}}),
    {ok, _} = py_reactor:start_listener(b, #{ip => {127, 0, 0, 1}, contexts => 1,
                                             context_opts => ctx_opts("Echo")}),
    {error, already_started} = py_reactor:start_listener(b, #{contexts => 1}),
    Busy = py_reactor:get_port(b),
    {error, {listen, eaddrinuse}} =
        py_reactor:start_listener(c, #{ip => {127, 0, 0, 1}, port => Busy, contexts => 1,
                                       socket_opts => [{reuseaddr, false}]}),
    {error, {bad_option, {max_connections, -3}}} = py_reactor:set_max_connections(b, -3),
    {error, not_found} = py_reactor:suspend_listener(nobody),
    {error, not_found} = py_reactor:resume_listener(nobody),
    {error, not_found} = py_reactor:info(nobody),
    {error, not_found} = py_reactor:get_port(nobody),
    {error, not_found} = py_reactor:stop_listener(nobody),
    ok = py_reactor:stop_listener(b),
    [] = py_reactor_server:listeners().

%% supervisor callback for own_supervisor/1.
init([Spec]) ->
    {ok, {#{strategy => one_for_one, intensity => 1, period => 5}, [Spec]}}.
