%% @doc The `py_reactor' application: starts {@link py_reactor_sup}.
%%
%% The application itself starts no context; start them with
%% {@link py_reactor_sup:start_context/3} (supervised by the application) or
%% link them into your own supervision tree with
%% {@link py_reactor_context:child_spec/1}.
-module(py_reactor_app).
-behaviour(application).

-export([start/2, stop/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_StartType, _Args) ->
    ok = py_reactor_log:ensure_visible(),
    py_reactor_sup:start_link().

-spec stop(term()) -> ok.
stop(_State) ->
    ok.
