%% handoff_socket/3 loses no byte the client sent before the handoff: what
%% an active `gen_tcp' socket has already delivered to the caller's mailbox
%% (or holds in its driver) reaches the protocol first.
-module(py_reactor_handoff_data_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [ctx_opts/1, ctx_opts/2, echo/2, wait_until/2]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [default_listen_options, list_mode_and_several_messages, refused_handoff_puts_back,
     packet_mode_refused, replay_of_initial_data].

init_per_testcase(_Case, Config) ->
    process_flag(trap_exit, true),
    Config.

end_per_testcase(_Case, _Config) ->
    flush(),
    ok.

%% gen_tcp:listen(Port, []): OTP's defaults, {active, true} and list mode.
%% The client writes before the handoff; the protocol echoes every byte.
default_listen_options(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(1, worker, ctx_opts("Echo")),
    {ok, L} = gen_tcp:listen(0, []),
    {ok, Port} = inet:port(L),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, S} = gen_tcp:accept(L),
    ok = gen_tcp:send(C, <<"sent before the handoff">>),
    wait_for_tcp_message(S),
    ok = py_reactor_context:handoff_socket(Ctx, S, #{}),
    {ok, <<"sent before the handoff">>} = recv_n(C, 23),
    ok = echo(C, <<"and after it">>),
    ok = gen_tcp:close(C),
    ok = py_reactor_context:stop(Ctx).

%% Several messages in the mailbox, in list mode, and bytes still in the
%% kernel: all of it arrives, in order.
list_mode_and_several_messages(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(1, worker, ctx_opts("Echo")),
    {ok, L} = gen_tcp:listen(0, [list, {active, true}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {nodelay, true}]),
    {ok, S} = gen_tcp:accept(L),
    Parts = [<<"part ", (integer_to_binary(N))/binary, ";">> || N <- lists:seq(1, 20)],
    [begin ok = gen_tcp:send(C, P), wait_for_tcp_message(S) end || P <- lists:sublist(Parts, 10)],
    [ok = gen_tcp:send(C, P) || P <- lists:nthtail(10, Parts)],
    All = iolist_to_binary(Parts),
    ok = py_reactor_context:handoff_socket(Ctx, S, #{}),
    {ok, All} = recv_n(C, byte_size(All)),
    [] = [M || {tcp, _, _} = M <- element(2, process_info(self(), messages))],
    ok = py_reactor_context:stop(Ctx).

%% A refused handoff gives the bytes back as one {tcp, S, Data} message and
%% restores the socket's active mode: the caller has lost nothing.
refused_handoff_puts_back(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(1, worker, ctx_opts("Echo", #{max_connections => 1})),
    {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    {ok, _C1} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, S1} = gen_tcp:accept(L),
    ok = py_reactor_context:handoff_socket(Ctx, S1, #{}),
    {ok, C2} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, S2} = gen_tcp:accept(L),
    ok = gen_tcp:send(C2, <<"kept">>),
    wait_for_tcp_message(S2),
    {error, max_connections} = py_reactor_context:handoff_socket(Ctx, S2, #{}),
    {ok, [{active, true}]} = inet:getopts(S2, [active]),
    <<"kept">> = collect_tcp(S2, <<>>),
    ok = gen_tcp:close(S2),
    ok = py_reactor_context:stop(Ctx).

packet_mode_refused(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(1, worker, ctx_opts("Echo")),
    {ok, L} = gen_tcp:listen(0, [binary, {packet, 4}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    {ok, _C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, S} = gen_tcp:accept(L),
    {error, {packet, 4}} = py_reactor_context:handoff_socket(Ctx, S, #{}),
    ok = gen_tcp:close(S),
    ok = py_reactor_context:stop(Ctx).

%% A recorded session whose handoff carried initial data replays the same.
replay_of_initial_data(Config) ->
    File = filename:join(?config(priv_dir, Config), "initial.rec"),
    {ok, Ctx} = py_reactor_context:start_link(1, worker,
                                             ctx_opts("Echo", #{record => File,
                                                                record_bytes => true})),
    {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, S} = gen_tcp:accept(L),
    ok = gen_tcp:send(C, <<"early">>),
    wait_for_tcp_message(S),
    ok = py_reactor_context:handoff_socket(Ctx, S, #{}),
    {ok, <<"early">>} = recv_n(C, 5),
    ok = echo(C, <<"late">>),
    ok = gen_tcp:close(C),
    wait_until(fun() -> maps:get(active_connections, py_reactor_context:stats(Ctx)) =:= 0 end,
               closed),
    ok = py_reactor_context:stop(Ctx),
    {0, Out} = py_reactor_test_lib:port_cli(["replay", File]),
    ct:log("~ts", [Out]),
    {_, _} = binary:match(Out, <<"replay matches">>),
    {0, Dump} = py_reactor_test_lib:port_cli(["dump", File]),
    {_, _} = binary:match(Dump, <<"<<\"early\">>">>).

wait_for_tcp_message(S) ->
    wait_until(fun() ->
                       {messages, Ms} = process_info(self(), messages),
                       lists:any(fun({tcp, S1, _}) -> S1 =:= S; (_) -> false end, Ms)
               end, tcp_message).

collect_tcp(S, Acc) ->
    receive
        {tcp, S, Data} -> collect_tcp(S, <<Acc/binary, Data/binary>>)
    after 0 ->
        Acc
    end.

recv_n(Sock, N) ->
    recv_n(Sock, N, <<>>).

recv_n(_Sock, 0, Acc) ->
    {ok, Acc};
recv_n(Sock, N, Acc) ->
    case gen_tcp:recv(Sock, 0, 10000) of
        {ok, Data} when byte_size(Data) =< N -> recv_n(Sock, N - byte_size(Data), <<Acc/binary, Data/binary>>);
        {ok, Data} -> {too_much, <<Acc/binary, Data/binary>>};
        {error, Reason} -> {error, Reason, Acc}
    end.

flush() ->
    receive _ -> flush() after 0 -> ok end.
