%% @doc An acceptor of a listener with `accept => vm': accepts a connection
%% and hands it off to the listener's context with the fewest open
%% connections.
%%
%% Before each `accept' the acceptor takes a place below the listener's
%% `max_connections' ({@link py_reactor_server:reserve/2}) and checks that
%% some context is below its own `max_connections'. When there is none it
%% does not accept: new clients wait in the kernel's backlog, and the
%% acceptor waits until a connection closes (or the limit is raised), then
%% accepts them in order. A connection is never refused for a limit: if
%% every context filled up between the check and the hand-off, the acceptor
%% keeps the socket and waits for room.
%%
%% Out of descriptors (`emfile', `enfile'), it logs once and retries every
%% 100 milliseconds instead of spinning. The loop calls `?MODULE:loop/1', so
%% a code upgrade reaches it.
-module(py_reactor_acceptor).

-export([start_link/2, loop/1]).

-include_lib("kernel/include/logger.hrl").

%% How long an acceptor waits for a wake-up before it looks again on its own
%% (a safety net: closes and limit changes wake it at once).
-define(RECHECK, 1000).
-define(EMFILE_PAUSE, 100).

-record(acceptor, {name :: term(),
                   index :: pos_integer(),
                   listener :: py_reactor_server:listener(),
                   out_of_fds = false :: boolean()}).

%% @doc Starts acceptor `K' of listener `Name', linked to the caller.
-spec start_link(term(), pos_integer()) -> {ok, pid()}.
start_link(Name, K) ->
    {ok, L} = py_reactor_server:lookup(Name),
    %% A reservation the previous incarnation held when it died.
    ok = py_reactor_server:release(L, K),
    Pid = proc_lib:spawn_link(?MODULE, loop,
                              [#acceptor{name = Name, index = K, listener = L}]),
    {ok, Pid}.

%% @private The accept loop.
-spec loop(#acceptor{}) -> no_return().
loop(A = #acceptor{listener = L, index = K}) ->
    case can_accept(L) andalso py_reactor_server:reserve(L, K) of
        true ->
            A1 = accept(A),
            ?MODULE:loop(A1);
        false ->
            ok = wait(L, fun() -> can_accept(L) end),
            ?MODULE:loop(A)
    end.

accept(A = #acceptor{listener = L = #{socket := LSock}, index = K, name = Name}) ->
    case gen_tcp:accept(LSock) of
        {ok, Sock} ->
            ok = place(L, Sock),
            ok = py_reactor_server:release(L, K),
            A#acceptor{out_of_fds = false};
        {error, Reason} when Reason =:= emfile; Reason =:= enfile ->
            ok = py_reactor_server:release(L, K),
            case A#acceptor.out_of_fds of
                false ->
                    ?LOG_WARNING("py_reactor listener ~0p: out of file descriptors (~0p); "
                                 "accepting more slowly", [Name, Reason]);
                true ->
                    ok
            end,
            receive after ?EMFILE_PAUSE -> ok end,
            A#acceptor{out_of_fds = true};
        {error, closed} ->
            ok = py_reactor_server:release(L, K),
            exit(normal);
        {error, Reason} ->
            ok = py_reactor_server:release(L, K),
            ?LOG_WARNING("py_reactor listener ~0p: accept failed: ~0p", [Name, Reason]),
            A
    end.

%% Hands the socket to the context with the fewest open connections that is
%% below its own limit; waits for room when there is none.
place(L = #{name := Name}, Sock) ->
    case try_contexts(L, Sock, candidates(L)) of
        ok ->
            ok;
        full ->
            ok = wait(L, fun() -> candidates(L) =/= [] end),
            place(L, Sock);
        {error, Reason} ->
            ?LOG_WARNING("py_reactor listener ~0p: connection dropped, hand-off failed: ~0p",
                         [Name, Reason]),
            _ = gen_tcp:close(Sock),
            ok
    end.

try_contexts(_L, _Sock, []) ->
    full;
try_contexts(L, Sock, [Pid | Rest]) ->
    case py_reactor_context:handoff_socket(Pid, Sock, #{}) of
        ok ->
            ok;
        {error, Reason} when Reason =:= max_connections; Reason =:= no_reactor_context ->
            try_contexts(L, Sock, Rest);
        {error, {context_exited, _}} ->
            try_contexts(L, Sock, Rest);
        {error, {aux_socket, Posix}} when Posix =/= ebadf ->
            %% The context's port is going away.
            try_contexts(L, Sock, Rest);
        {error, Reason} ->
            {error, Reason}
    end.

%% Live contexts below their own limit, fewest open connections first.
candidates(L = #{context_max := CtxMax}) ->
    Counted = [{py_reactor_server:context_active(L, I), Pid}
               || {I, Pid} <- py_reactor_server:contexts(L)],
    [Pid || {Active, Pid} <- lists:keysort(1, Counted), Active < CtxMax].

%% Running, below the listener's limit, and some context below its own.
can_accept(L) ->
    py_reactor_server:status(L) =:= running
        andalso case py_reactor_server:max_connections(L) of
                    infinity -> true;
                    Max -> py_reactor_server:used(L) < Max
                end
        andalso candidates(L) =/= [].

%% Waits until Ready() holds, woken by closes and listener changes.
wait(L, Ready) ->
    ok = py_reactor_server:add_waiter(L),
    case Ready() of
        true ->
            ok;
        false ->
            receive
                {py_reactor_wake, _} -> ok
            after ?RECHECK ->
                ok
            end
    end,
    ok = py_reactor_server:remove_waiter(L),
    flush_wakes().

flush_wakes() ->
    receive
        {py_reactor_wake, _} -> flush_wakes()
    after 0 ->
        ok
    end.
