%% @doc Listener state that many processes read: an ETS table and, per
%% listener, one `atomics' array.
%%
%% Acceptors, contexts and callers of {@link py_reactor:info/1} read and
%% update a listener's counters directly, so none of them queues behind a
%% process per connection. The `gen_server' here only owns the table and
%% removes a listener's rows when its supervisor dies.
%%
%% Table rows: `{{listener, Name}, Listener}' (the map of
%% {@link listener()}), `{{context, Name, Index}, Pid}' (the running
%% context of each slot) and `{{waiter, Name, Pid}}' (processes waiting for
%% a connection to close: acceptors held at a limit, a draining
%% {@link py_reactor:stop_listener/1}).
%%
%% Counters of a listener (indices into its `atomics' array):
%% `used' (open connections plus the reservations of acceptors waiting in
%% `accept'), `total' (connections accepted since the start), `waiters',
%% `status' (0 running, 1 suspended, 2 stopping), `max' (-1 for
%% `infinity'), then one slot per context (its open connections) and one per
%% acceptor (1 while it holds a reservation).
-module(py_reactor_server).
-behaviour(gen_server).

-export([start_link/0]).
-export([register_listener/2, lookup/1, listeners/0]).
-export([context_started/3, contexts/1, context_slot/2, context_active/2]).
-export([status/1, set_status/2, max_connections/1, set_max_connections/2]).
-export([used/1, total/1, reserve/2, release/2]).
-export([conn_opened/1, conn_closed/1, conn_undone/1, conns_lost/1]).
-export([add_waiter/1, remove_waiter/1, wake/1]).

-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-export_type([listener/0, slot/0]).

-define(TAB, ?MODULE).
-define(USED, 1).
-define(TOTAL, 2).
-define(WAITERS, 3).
-define(STATUS, 4).
-define(MAX, 5).
-define(FIRST_CONTEXT, 6).

-type listener() :: #{name := term(),
                      atomics := atomics:atomics_ref(),
                      contexts := pos_integer(),
                      num_acceptors := non_neg_integer(),
                      context_max := pos_integer(),
                      accept := vm | port,
                      socket := gen_tcp:socket(),
                      sup := pid(),
                      atom() => term()}.

-opaque slot() :: {py_reactor_slot, Name :: term(), atomics:atomics_ref(), pos_integer()}.
%% What a context of a listener is given (its `listener' option) to keep its
%% slot's count.

%% @doc Starts the server, registered as `py_reactor_server'.
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Records a new listener, whose supervisor `Sup' is monitored: its rows
%% go when it dies. `Listener' lacks `atomics' (made here) and `sup'.
%% Returns the complete listener map, or `{error, already_started}'.
-spec register_listener(term(), map()) -> {ok, listener()} | {error, already_started}.
register_listener(Name, Listener) ->
    gen_server:call(?MODULE, {register, Name, Listener#{sup => self()}}).

%% @doc The listener `Name', or `error'.
-spec lookup(term()) -> {ok, listener()} | error.
lookup(Name) ->
    case ets:lookup(?TAB, {listener, Name}) of
        [{_, Listener}] -> {ok, Listener};
        [] -> error
    end.

%% @doc The names of all listeners.
-spec listeners() -> [term()].
listeners() ->
    ets:select(?TAB, [{{{listener, '$1'}, '_'}, [], ['$1']}]).

%% @doc Records the pid of context `Index' of listener `Name' once it has
%% started (by the contexts' supervisor).
-spec context_started(term(), pos_integer(), pid()) -> ok.
context_started(Name, Index, Pid) ->
    true = ets:insert(?TAB, {{context, Name, Index}, Pid}),
    ok.

%% @doc The live contexts of a listener: `[{Index, Pid}]'.
-spec contexts(listener()) -> [{pos_integer(), pid()}].
contexts(#{name := Name, contexts := N}) ->
    lists:append([[{I, Pid} || {_, Pid} <- ets:lookup(?TAB, {context, Name, I}),
                               is_process_alive(Pid)]
                  || I <- lists:seq(1, N)]).

%% @doc The slot context `Index' is given, after its previous incarnation's
%% connections (if it died without releasing them) are released.
-spec context_slot(listener(), pos_integer()) -> slot().
context_slot(#{name := Name, atomics := A}, Index) ->
    Slot = {py_reactor_slot, Name, A, ?FIRST_CONTEXT + Index - 1},
    ok = conns_lost(Slot),
    Slot.

%% @doc Open connections of context `Index'.
-spec context_active(listener(), pos_integer()) -> integer().
context_active(#{atomics := A}, Index) ->
    atomics:get(A, ?FIRST_CONTEXT + Index - 1).

%% @doc `running', `suspended' or `stopping'.
-spec status(listener()) -> running | suspended | stopping.
status(#{atomics := A}) ->
    case atomics:get(A, ?STATUS) of
        0 -> running;
        1 -> suspended;
        2 -> stopping
    end.

-spec set_status(listener(), running | suspended | stopping) -> ok.
set_status(L = #{atomics := A}, Status) ->
    Code = case Status of running -> 0; suspended -> 1; stopping -> 2 end,
    ok = atomics:put(A, ?STATUS, Code),
    wake(L).

-spec max_connections(listener()) -> pos_integer() | infinity.
max_connections(#{atomics := A}) ->
    case atomics:get(A, ?MAX) of
        -1 -> infinity;
        N -> N
    end.

%% @doc Changes the limit and wakes acceptors held by the old one.
-spec set_max_connections(listener(), pos_integer() | infinity) -> ok.
set_max_connections(L = #{atomics := A}, Max) ->
    ok = atomics:put(A, ?MAX, case Max of infinity -> -1; N -> N end),
    wake(L).

%% @doc Open connections plus reservations.
-spec used(listener()) -> integer().
used(#{atomics := A}) ->
    atomics:get(A, ?USED).

%% @doc Connections accepted since the listener started.
-spec total(listener()) -> non_neg_integer().
total(#{atomics := A}) ->
    atomics:get(A, ?TOTAL).

%% @doc Takes one place below the listener's limit for acceptor `K' (its
%% next `accept'). `false' when the listener is full (nothing taken).
-spec reserve(listener(), pos_integer()) -> boolean().
reserve(L = #{atomics := A}, K) ->
    Used = atomics:add_get(A, ?USED, 1),
    case max_connections(L) of
        Max when Max =:= infinity; Used =< Max ->
            ok = atomics:put(A, acceptor_index(L, K), 1),
            true;
        _ ->
            ok = atomics:sub(A, ?USED, 1),
            wake(L),
            false
    end.

%% @doc Gives back the reservation of acceptor `K': after its connection
%% was handed off (its context counts it now), or, when an acceptor starts,
%% the one its previous incarnation held when it died.
-spec release(listener(), pos_integer()) -> ok.
release(L = #{atomics := A}, K) ->
    case atomics:exchange(A, acceptor_index(L, K), 0) of
        0 -> ok;
        1 -> atomics:sub(A, ?USED, 1), wake(L)
    end.

%% @doc A context counts a connection it accepted or was handed.
-spec conn_opened(slot()) -> ok.
conn_opened({py_reactor_slot, _Name, A, Index}) ->
    ok = atomics:add(A, Index, 1),
    ok = atomics:add(A, ?USED, 1),
    atomics:add(A, ?TOTAL, 1).

%% @doc A context counts a connection closed, and wakes waiting acceptors.
-spec conn_closed(slot()) -> ok.
conn_closed(Slot = {py_reactor_slot, _Name, A, Index}) ->
    ok = atomics:sub(A, Index, 1),
    ok = atomics:sub(A, ?USED, 1),
    wake_slot(Slot).

%% @doc A context takes back a connection it counted but could not hand
%% to its port: it was never open, so it leaves the total too.
-spec conn_undone(slot()) -> ok.
conn_undone(Slot = {py_reactor_slot, _Name, A, _Index}) ->
    ok = atomics:sub(A, ?TOTAL, 1),
    conn_closed(Slot).

%% @doc Every connection of a context is gone (it stopped or died).
-spec conns_lost(slot()) -> ok.
conns_lost(Slot = {py_reactor_slot, _Name, A, Index}) ->
    case atomics:exchange(A, Index, 0) of
        0 -> ok;
        Lost -> atomics:sub(A, ?USED, Lost), wake_slot(Slot)
    end.

%% @doc The caller will wait for `{py_reactor_wake, Name}' messages, sent
%% when a connection closes or the limit or status changes. Register before
%% checking the condition waited for, so that no wake-up is missed.
-spec add_waiter(listener()) -> ok.
add_waiter(#{name := Name, atomics := A}) ->
    true = ets:insert(?TAB, {{waiter, Name, self()}}),
    atomics:add(A, ?WAITERS, 1).

-spec remove_waiter(listener()) -> ok.
remove_waiter(#{name := Name, atomics := A}) ->
    case ets:take(?TAB, {waiter, Name, self()}) of
        [] -> ok;
        [_] -> atomics:sub(A, ?WAITERS, 1)
    end.

%% @doc Wakes every waiter of the listener.
-spec wake(listener()) -> ok.
wake(#{name := Name, atomics := A}) ->
    wake_slot({py_reactor_slot, Name, A, 0}).

wake_slot({py_reactor_slot, Name, A, _}) ->
    case atomics:get(A, ?WAITERS) of
        0 ->
            ok;
        _ ->
            Pids = ets:select(?TAB, [{{{waiter, Name, '$1'}}, [], ['$1']}]),
            _ = [Pid ! {py_reactor_wake, Name} || Pid <- Pids],
            ok
    end.

acceptor_index(#{contexts := N}, K) ->
    ?FIRST_CONTEXT + N + K - 1.

%% gen_server.

%% @private
-spec init([]) -> {ok, #{reference() => term()}}.
init([]) ->
    _ = ets:new(?TAB, [ordered_set, public, named_table, {read_concurrency, true},
                       {write_concurrency, true}]),
    {ok, #{}}.

%% @private
-spec handle_call(term(), gen_server:from(), map()) -> {reply, term(), map()}.
handle_call({register, Name, Listener = #{contexts := N, num_acceptors := NA, sup := Sup}},
            _From, Monitors) ->
    case lookup(Name) of
        {ok, #{sup := OldSup}} when OldSup =/= Sup ->
            case is_process_alive(OldSup) of
                true ->
                    {reply, {error, already_started}, Monitors};
                false ->
                    %% A listener restarted by its supervisor before this
                    %% server saw its previous incarnation go: forget it now.
                    Monitors1 = forget(Name, Monitors),
                    handle_call({register, Name, Listener}, _From, Monitors1)
            end;
        {ok, _} ->
            {reply, {error, already_started}, Monitors};
        error ->
            A = atomics:new(?FIRST_CONTEXT - 1 + N + max(NA, 1), [{signed, true}]),
            Listener1 = Listener#{name => Name, atomics => A},
            ok = set_max_connections(Listener1, maps:get(max_connections, Listener)),
            true = ets:insert(?TAB, {{listener, Name}, Listener1}),
            MRef = monitor(process, Sup),
            {reply, {ok, Listener1}, Monitors#{MRef => Name}}
    end;
handle_call(_Request, _From, Monitors) ->
    {reply, {error, unknown_request}, Monitors}.

%% @private
-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, Monitors) ->
    {noreply, Monitors}.

%% @private
-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info({'DOWN', MRef, process, _Pid, _Reason}, Monitors) ->
    case maps:take(MRef, Monitors) of
        {Name, Monitors1} ->
            ok = delete_rows(Name),
            {noreply, Monitors1};
        error ->
            {noreply, Monitors}
    end;
handle_info(_Info, Monitors) ->
    {noreply, Monitors}.

forget(Name, Monitors) ->
    ok = delete_rows(Name),
    maps:filter(fun(MRef, N) when N =:= Name -> demonitor(MRef, [flush]), false;
                   (_, _) -> true
                end, Monitors).

delete_rows(Name) ->
    true = ets:match_delete(?TAB, {{listener, Name}, '_'}),
    true = ets:match_delete(?TAB, {{context, Name, '_'}, '_'}),
    true = ets:match_delete(?TAB, {{waiter, Name, '_'}}),
    ok.
