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
-module(py_reactor_log).

-export([ensure_visible/0, domain/0]).

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
