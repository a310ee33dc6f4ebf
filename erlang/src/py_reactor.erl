%% @doc The front door: listeners that accept connections and serve them
%% with a pool of reactor contexts.
%%
%% A listener owns a listening socket and `contexts' {@link py_reactor_context}
%% processes (by default one per scheduler, so every core serves), all set up
%% with the same `context_opts'. Each new connection goes to the context with
%% the fewest open connections.
%%
%% ```
%% {ok, _} = application:ensure_all_started(py_reactor),
%% {ok, _} = py_reactor:start_listener(http, #{
%%     port => 8080,
%%     context_opts => #{python_path => ["examples"],
%%                       setup_code => <<"import http_protocol\n">>}}),
%% Port = py_reactor:get_port(http).
%% '''
%%
%% == Options ==
%%
%% <dl>
%% <dt>`ip' (`inet:ip_address() | {local, Path} | any', default `any')</dt>
%% <dd>The address to listen on; `{local, Path}' listens on a Unix socket
%%     (the path must not exist; it is removed when the listener stops).</dd>
%% <dt>`port' (`inet:port_number()', default 0)</dt>
%% <dd>0 picks a free port: see {@link get_port/1}.</dd>
%% <dt>`backlog' (`pos_integer()', default 1024)</dt>
%% <dd>The kernel's queue of connections not yet accepted: where clients
%%     wait while the listener is full or suspended.</dd>
%% <dt>`socket_opts' (list, default `[]')</dt>
%% <dd>More `gen_tcp:listen/2' options (they come first, so they win).</dd>
%% <dt>`listen_socket' (`gen_tcp:socket()')</dt>
%% <dd>A passive socket the caller already listens on (one opened with
%%     privileges, say); `ip', `port', `backlog' and `socket_opts' are then
%%     not used. The caller stays its owner and must keep it open.</dd>
%% <dt>`contexts' (`pos_integer()', default the number of online schedulers)</dt>
%% <dd>How many contexts (port programs) serve the listener.</dd>
%% <dt>`context_opts' (map, default `#{}')</dt>
%% <dd>The options of {@link py_reactor_context:start_link/3} for every
%%     context (`setup_code', `app_module', `python_path',
%%     `max_connections', ...), except `name' and `default'. With more
%%     than one context, `multiprocess' is `true' (`wsgi.multiprocess').</dd>
%% <dt>`max_connections' (`pos_integer() | infinity', default 1024)</dt>
%% <dd>Open connections of the whole listener. At the limit the listener
%%     stops accepting: new clients wait in the backlog and are served, in
%%     order, as connections close. None is refused. Each context's own
%%     `max_connections' (in `context_opts', default 100) holds the same
%%     way.</dd>
%% <dt>`accept' (`vm | port', default `vm')</dt>
%% <dd>`vm': acceptor processes accept and hand each connection off
%%     ({@link py_reactor_acceptor}). `port': every context's port program
%%     gets a duplicate of the listening socket and accepts itself, each
%%     within its share of `max_connections'. Suspend, resume, limits,
%%     {@link info/1} and stop behave the same in both.</dd>
%% <dt>`num_acceptors' (`pos_integer()', default 10)</dt>
%% <dd>Acceptor processes, with `accept => vm'.</dd>
%% <dt>`drain_timeout' (`timeout()', default 5000)</dt>
%% <dd>Milliseconds {@link stop_listener/1} lets open connections finish.</dd>
%% </dl>
%%
%% Unknown options give `{error, {unknown_option, Key}}', bad values
%% `{error, {bad_option, {Key, Value}}}'.
-module(py_reactor).

-export([start_listener/2, start_link/2, child_spec/2, stop_listener/1]).
-export([get_port/1, suspend_listener/1, resume_listener/1, set_max_connections/2,
         info/1]).

-export_type([opts/0, info/0]).

-type opts() :: #{ip => inet:ip_address() | {local, file:filename_all()} | any,
                  port => inet:port_number(),
                  backlog => pos_integer(),
                  socket_opts => [gen_tcp:listen_option()],
                  listen_socket => gen_tcp:socket(),
                  contexts => pos_integer(),
                  context_opts => py_reactor_context:opts(),
                  max_connections => pos_integer() | infinity,
                  accept => vm | port,
                  num_acceptors => pos_integer(),
                  drain_timeout => timeout()}.

-type info() :: #{status := running | suspended | stopping,
                  ip := inet:ip_address() | {local, binary()} | any,
                  port := inet:port_number(),
                  accept := vm | port,
                  max_connections := pos_integer() | infinity,
                  active_connections := non_neg_integer(),
                  total_connections := non_neg_integer(),
                  contexts := [py_reactor_context:stats()]}.

%% @doc Starts a listener supervised by the `py_reactor' application.
%%
%% Returns once the socket listens and every context has run its Python
%% setup. Errors: `{error, already_started}' (a listener has this name),
%% `{error, {listen, Posix}}', a context's start error (for instance
%% `{error, {python, Type, Message, Traceback}}'), and the option errors
%% above.
-spec start_listener(term(), opts()) -> {ok, pid()} | {error, term()}.
start_listener(Name, Opts) ->
    case check_opts(Opts) of
        {ok, _} ->
            case supervisor:start_child(py_reactor_sup, child_spec(Name, Opts)) of
                {ok, Pid} -> {ok, Pid};
                {error, {already_started, _}} -> {error, already_started};
                {error, already_present} -> {error, already_started};
                {error, {Reason, _Child}} -> {error, unwrap(Reason)};
                {error, Reason} -> {error, unwrap(Reason)}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @private The start function of {@link child_spec/2}.
-spec start_link(term(), opts()) -> {ok, pid()} | {error, term()}.
start_link(Name, Opts) ->
    case check_opts(Opts) of
        {ok, Opts1} ->
            case py_reactor_listener_sup:start_link(Name, Opts1) of
                {ok, Pid} -> {ok, Pid};
                {error, Reason} -> {error, unwrap(Reason)}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc A child spec to run listener `Name' in your own supervisor (the
%% `py_reactor' application must be started: its server keeps the state of
%% every listener). The child id is `{py_reactor_listener, Name}'; restart
%% `transient', so {@link stop_listener/1} stops it for good.
-spec child_spec(term(), opts()) -> supervisor:child_spec().
child_spec(Name, Opts) ->
    #{id => {py_reactor_listener, Name},
      start => {?MODULE, start_link, [Name, Opts]},
      restart => transient,
      shutdown => infinity,
      type => supervisor,
      modules => [py_reactor_listener_sup]}.

%% @doc Stops a listener gracefully: it stops accepting at once, lets open
%% connections finish for up to `drain_timeout' milliseconds, then stops its
%% contexts (each connection still open gets `connection_lost'). A listener
%% started with {@link start_listener/2} is removed; one in your own
%% supervisor is terminated there (and stays, terminated).
-spec stop_listener(term()) -> ok | {error, not_found}.
stop_listener(Name) ->
    case py_reactor_server:lookup(Name) of
        {ok, L = #{sup := Sup, drain_timeout := DrainTimeout}} ->
            ok = py_reactor_server:set_status(L, stopping),
            ok = stop_accepting(L),
            ok = drain(L, deadline(DrainTimeout)),
            Parent = parent(Sup),
            ChildId = {py_reactor_listener, Name},
            _ = supervisor:terminate_child(Parent, ChildId),
            _ = case Parent of
                py_reactor_sup -> supervisor:delete_child(Parent, ChildId);
                _ -> ok
            end,
            ok = close_own_socket(L),
            ok = remove_unix_path(L),
            ok;
        error ->
            {error, not_found}
    end.

%% @doc The port the listener listens on (0 for a Unix socket);
%% `{error, not_found}' when there is no such listener, `{error, Posix}'
%% when its socket is closed (it is being stopped).
-spec get_port(term()) -> inet:port_number() | {error, not_found | inet:posix()}.
get_port(Name) ->
    case py_reactor_server:lookup(Name) of
        {ok, #{socket := Socket}} ->
            case inet:sockname(Socket) of
                {ok, {local, _}} -> 0;
                {ok, {_Ip, Port}} -> Port;
                {error, Posix} -> {error, Posix}
            end;
        error ->
            {error, not_found}
    end.

%% @doc Stops accepting; open connections keep being served. New clients
%% wait in the kernel's backlog until {@link resume_listener/1}.
-spec suspend_listener(term()) -> ok | {error, not_found}.
suspend_listener(Name) ->
    case py_reactor_server:lookup(Name) of
        {ok, L} ->
            ok = py_reactor_server:set_status(L, suspended),
            stop_accepting(L);
        error ->
            {error, not_found}
    end.

%% @doc Accepts again after {@link suspend_listener/1}.
-spec resume_listener(term()) -> ok | {error, not_found}.
resume_listener(Name) ->
    case py_reactor_server:lookup(Name) of
        {ok, L = #{sup := Sup, accept := Accept}} ->
            ok = py_reactor_server:set_status(L, running),
            case Accept of
                vm ->
                    case supervisor:restart_child(Sup, acceptors) of
                        {ok, _} -> ok;
                        {error, running} -> ok
                    end;
                port ->
                    port_control(L)
            end;
        error ->
            {error, not_found}
    end.

%% @doc Changes the listener's `max_connections'. Raising it serves waiting
%% clients at once; lowering it below the open connections closes none, but
%% accepts no more until enough have closed.
-spec set_max_connections(term(), pos_integer() | infinity) -> ok | {error, term()}.
set_max_connections(Name, Max) ->
    case check_opt(max_connections, Max) of
        ok ->
            case py_reactor_server:lookup(Name) of
                {ok, L = #{accept := Accept}} ->
                    ok = py_reactor_server:set_max_connections(L, Max),
                    case Accept of
                        vm -> ok;
                        port -> port_control(L)
                    end;
                error ->
                    {error, not_found}
            end;
        error ->
            {error, {bad_option, {max_connections, Max}}}
    end.

%% @doc The listener's state: `status', `ip', `port', `accept',
%% `max_connections', `active_connections' (open connections, the sum of
%% the contexts' own exact counts), `total_connections' (accepted since the
%% listener started, including those of contexts that died since) and
%% `contexts' (the {@link py_reactor_context:stats/1} map of every running
%% context). `{error, not_found}' when there is no such listener.
-spec info(term()) -> info() | {error, not_found}.
info(Name) ->
    case py_reactor_server:lookup(Name) of
        {ok, L = #{socket := Socket, accept := Accept}} ->
            Stats = lists:append([context_stats(Pid) || {_I, Pid} <- py_reactor_server:contexts(L)]),
            {Ip, Port} = case inet:sockname(Socket) of
                {ok, {local, Path}} -> {{local, Path}, 0};
                {ok, {Addr, P}} -> {Addr, P};
                {error, _} -> {any, 0}
            end,
            #{status => py_reactor_server:status(L),
              ip => Ip,
              port => Port,
              accept => Accept,
              max_connections => py_reactor_server:max_connections(L),
              active_connections => lists:sum([maps:get(active_connections, S) || S <- Stats]),
              total_connections => py_reactor_server:total(L),
              contexts => Stats};
        error ->
            {error, not_found}
    end.

%% Internal.

context_stats(Pid) ->
    case py_reactor_context:stats(Pid) of
        Stats when is_map(Stats) -> [Stats];
        %% Died meanwhile (no_reactor_context, port_killed, ...): its
        %% connections are gone too.
        {error, _} -> []
    end.

stop_accepting(#{accept := vm, sup := Sup}) ->
    case supervisor:terminate_child(Sup, acceptors) of
        ok -> ok;
        {error, not_found} -> ok
    end;
stop_accepting(L = #{accept := port}) ->
    port_control(L).

%% Tells every context's port its share of the limit and whether to accept.
port_control(L) ->
    Paused = py_reactor_server:status(L) =/= running,
    _ = [py_reactor_context:listen_control(
             Pid, #{max_connections => py_reactor_contexts_sup:port_limit(L, I),
                    paused => Paused})
         || {I, Pid} <- py_reactor_server:contexts(L)],
    ok.

drain(L = #{contexts := N}, Deadline) ->
    ok = py_reactor_server:add_waiter(L),
    try
        drain_loop(L, N, Deadline)
    after
        py_reactor_server:remove_waiter(L)
    end.

drain_loop(L, N, Deadline) ->
    Active = lists:sum([max(0, py_reactor_server:context_active(L, I))
                        || I <- lists:seq(1, N)]),
    case Active of
        0 ->
            ok;
        _ ->
            receive
                {py_reactor_wake, _} -> drain_loop(L, N, Deadline)
            after min(timeout(Deadline), 100) ->
                case timeout(Deadline) of
                    0 -> ok;
                    _ -> drain_loop(L, N, Deadline)
                end
            end
    end.

parent(Sup) ->
    {dictionary, Dict} = process_info(Sup, dictionary),
    case proplists:get_value('$ancestors', Dict) of
        [Parent | _] -> Parent;
        _ -> py_reactor_sup
    end.

%% The socket died with the listener's supervisor; closed here too, so that
%% it is closed for certain when stop_listener/1 returns.
close_own_socket(#{adopted := true}) ->
    ok;
close_own_socket(#{socket := Socket}) ->
    _ = catch gen_tcp:close(Socket),
    ok.

remove_unix_path(#{socket := _Socket, unix_path := Path}) ->
    _ = file:delete(Path),
    ok;
remove_unix_path(_) ->
    ok.

unwrap({shutdown, {failed_to_start_child, _Id, Reason}}) -> unwrap(Reason);
unwrap({{shutdown, {failed_to_start_child, _Id, Reason}}, _}) -> unwrap(Reason);
unwrap(Reason) -> Reason.

check_opts(Opts) when is_map(Opts) ->
    Defaults = #{port => 0,
                 backlog => 1024,
                 socket_opts => [],
                 contexts => erlang:system_info(schedulers_online),
                 context_opts => #{},
                 max_connections => 1024,
                 accept => vm,
                 num_acceptors => 10,
                 drain_timeout => 5000},
    case [K || K <- maps:keys(Opts), not is_map_key(K, Defaults),
               K =/= ip, K =/= listen_socket] of
        [Key | _] ->
            {error, {unknown_option, Key}};
        [] ->
            case [{K, V} || {K, V} <- maps:to_list(Opts), check_opt(K, V) =:= error] of
                [Bad | _] -> {error, {bad_option, Bad}};
                [] -> {ok, maps:merge(Defaults, with_unix_path(Opts))}
            end
    end;
check_opts(Opts) ->
    {error, {bad_option, {opts, Opts}}}.

with_unix_path(Opts = #{ip := {local, Path}}) ->
    Opts#{unix_path => Path};
with_unix_path(Opts) ->
    Opts.

check_opt(ip, any) -> ok;
check_opt(ip, {local, Path}) when is_list(Path); is_binary(Path) -> ok;
check_opt(ip, Ip) when is_tuple(Ip) ->
    case inet:ntoa(Ip) of
        {error, einval} -> error;
        _ -> ok
    end;
check_opt(port, P) when is_integer(P), P >= 0, P =< 65535 -> ok;
check_opt(backlog, N) when is_integer(N), N > 0 -> ok;
check_opt(socket_opts, L) when is_list(L) -> ok;
check_opt(listen_socket, S) when is_port(S) -> ok;
check_opt(contexts, N) when is_integer(N), N > 0 -> ok;
check_opt(context_opts, M) when is_map(M) ->
    case is_map_key(name, M) orelse is_map_key(default, M) orelse is_map_key(listener, M) of
        true -> error;
        false -> ok
    end;
check_opt(max_connections, infinity) -> ok;
check_opt(max_connections, N) when is_integer(N), N > 0 -> ok;
check_opt(accept, A) when A =:= vm; A =:= port -> ok;
check_opt(num_acceptors, N) when is_integer(N), N > 0 -> ok;
check_opt(drain_timeout, infinity) -> ok;
check_opt(drain_timeout, N) when is_integer(N), N >= 0 -> ok;
check_opt(_, _) -> error.

deadline(infinity) -> infinity;
deadline(Timeout) -> erlang:monotonic_time(millisecond) + Timeout.

timeout(infinity) -> infinity;
timeout(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).
