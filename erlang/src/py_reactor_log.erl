%% @doc Makes the application's log events visible on a node whose logger
%% was never configured.
%%
%% Every event the application logs carries `domain => [py_reactor]', so
%% that it can be filtered as a whole. OTP's `default' handler, as a node
%% starts it, passes only events with no domain or an OTP one and stops the
%% rest (its `filter_default' is `stop'): a Python traceback would be
%% dropped without a trace. {@link ensure_visible/0} adds one handler filter
%% to the `default' handler, with the id `py_reactor', that passes the
%% events of the `py_reactor' domain.
%%
%% To keep the events off the `default' handler, set the application
%% environment `{py_reactor, [{log_to_default_handler, false}]}' before the
%% first context starts, or remove the filter
%% (`logger:remove_handler_filter(default, py_reactor)'); to drop some of
%% them, add a filter on the domain, for instance the primary filter
%% `{fun logger_filters:domain/2, {stop, sub, [py_reactor]}}'.
%%
%% The log lines a context writes for what its port tells it are made here
%% too: the lines Python logs ({@link port_line/3}) and the ends of
%% connections ({@link closed/3}), each at the level its meaning calls for.
-module(py_reactor_log).

-export([ensure_visible/0, domain/0]).
-export([port_line/3, closed/3]).

-include_lib("kernel/include/logger.hrl").

-define(DONE_KEY, {?MODULE, done}).

%% @doc The domain of every event the application logs: `[py_reactor]'.
-spec domain() -> [atom(), ...].
domain() ->
    [py_reactor].

%% @doc Adds the `py_reactor' filter to the `default' handler, once per node
%% (so a filter removed on purpose stays removed). Returns `ok' also when
%% there is no `default' handler or the application environment says
%% `{log_to_default_handler, false}'.
-spec ensure_visible() -> ok.
ensure_visible() ->
    case persistent_term:get(?DONE_KEY, false) of
        true ->
            ok;
        false ->
            persistent_term:put(?DONE_KEY, true),
            case application:get_env(py_reactor, log_to_default_handler, true) of
                true -> add_filter();
                _ -> ok
            end
    end.

add_filter() ->
    Filter = {fun logger_filters:domain/2, {log, sub, domain()}},
    case logger:add_handler_filter(default, py_reactor, Filter) of
        ok -> ok;
        {error, {already_exist, _}} -> ok;
        {error, {not_found, default}} -> ok;
        {error, _Other} -> ok
    end.

%% @doc Logs a line the port sent as `{log, Level, Text}' for the context
%% `Id' (Python's `sys.stdout' and `sys.stderr', tracebacks, the port's own
%% messages), with the context's metadata. A `Level' that is not one of
%% `logger''s is logged at `error', naming it.
-spec port_line(term(), term(), unicode:chardata()) -> ok.
port_line(Id, Level, Text) ->
    Meta = #{py_reactor_context => Id, domain => domain()},
    case is_log_level(Level) of
        true ->
            logger:log(Level, "py_reactor_context ~0p: ~ts", [Id, Text], Meta);
        false ->
            logger:log(error, "py_reactor_context ~0p: (bad level ~0p) ~ts",
                       [Id, Level, Text], Meta)
    end.

is_log_level(Level) ->
    lists:member(Level, [emergency, alert, critical, error, warning, notice, info, debug]).

%% @doc Logs the end of connection `ConnId' of the context `Id', as the
%% port's `{closed, ConnId, Reason}' reports it: nothing for an ordinary end
%% (`normal', `eof', `stopped'), `debug' for ends that are the peer's or the
%% protocol's business (`idle_timeout', an error of the socket, a Python
%% exception, whose traceback the port has logged already), `warning' for a
%% handoff the port refused and for anything else.
-spec closed(term(), non_neg_integer(), term()) -> ok.
closed(_Id, _ConnId, Reason) when Reason =:= normal; Reason =:= eof;
                                  Reason =:= stopped ->
    ok;
closed(Id, ConnId, {error, Errno}) when Errno =:= emfile; Errno =:= enfile ->
    ?LOG_WARNING("py_reactor_context ~0p: the port refused handoff ~b: it is out of "
                 "descriptors (~0p)", [Id, ConnId, Errno]);
closed(Id, ConnId, idle_timeout) ->
    ?LOG_DEBUG("py_reactor_context ~0p: connection ~b closed: idle_timeout",
               [Id, ConnId]);
closed(Id, ConnId, {error, Errno}) ->
    ?LOG_DEBUG("py_reactor_context ~0p: connection ~b closed: ~0p",
               [Id, ConnId, Errno]);
closed(Id, ConnId, {python, Type, Message, _Traceback}) ->
    %% The port logs the traceback itself, once, at error.
    ?LOG_DEBUG("py_reactor_context ~0p: connection ~b closed by a Python exception: ~ts: ~ts",
               [Id, ConnId, Type, Message]);
closed(Id, ConnId, {bad_action, Text}) ->
    ?LOG_WARNING("py_reactor_context ~0p: connection ~b closed: the protocol returned "
                 "a bad action: ~ts", [Id, ConnId, Text]);
closed(Id, ConnId, Reason) when Reason =:= max_connections; Reason =:= not_set_up;
                                 Reason =:= duplicate_id; Reason =:= fd_not_received;
                                 Reason =:= listening_socket; Reason =:= not_connected ->
    ?LOG_WARNING("py_reactor_context ~0p: the port refused handoff ~b: ~0p",
                 [Id, ConnId, Reason]);
closed(Id, ConnId, Reason) ->
    ?LOG_WARNING("py_reactor_context ~0p: connection ~b closed: ~0P",
                 [Id, ConnId, Reason, 30]).
