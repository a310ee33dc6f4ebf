%% @doc Runnable servers built on `py_reactor': the specification's HTTP and
%% echo examples.
%%
%% A listener ({@link py_reactor:start_listener/2}) accepts connections on
%% 127.0.0.1 and places each one on one of its contexts (one per scheduler);
%% each context's port program runs the Python protocol from `examples/'
%% (`http_protocol.py' or `echo_protocol.py', which set the protocol factory
%% when imported).
%%
%% From a shell in the repository (after `rebar3 compile'):
%%
%% ```
%% rebar3 shell --eval 'py_reactor_example:main(8080).'
%% erl -pa _build/default/lib/py_reactor/ebin -pa _build/default/extras/examples \
%%     -noshell -s py_reactor_example main 8080
%% '''
%%
%% then `curl http://127.0.0.1:8080/'. {@link echo/1} runs the echo server
%% the same way. {@link start/2} and {@link stop/1} run either without
%% blocking (the test suites use them).
%%
%% The Python files are looked up in `$PY_REACTOR_EXAMPLES', else next to
%% this module's source file.
-module(py_reactor_example).

-export([main/1, echo/1, start/2, stop/1, examples_dir/0]).

-type kind() :: http | echo.
-type server() :: #{kind := kind(),
                    port := inet:port_number(),
                    listener := term()}.
-export_type([kind/0, server/0]).

%% @doc Runs the HTTP example on 127.0.0.1:`Port' and never returns.
%%
%% `Port' may also be given as `erl -s' passes it: `[Atom]'.
-spec main(inet:port_number() | [atom() | string()]) -> no_return().
main(Port) ->
    run(http, Port).

%% @doc Runs the echo example on 127.0.0.1:`Port' and never returns.
-spec echo(inet:port_number() | [atom() | string()]) -> no_return().
echo(Port) ->
    run(echo, Port).

%% @doc Starts an example server on 127.0.0.1:`Port' (0 picks a free port)
%% and returns at once.
%%
%% Starts the `py_reactor' application and a listener named
%% `{py_reactor_example, Kind, Port}' with as many contexts as schedulers.
-spec start(kind(), inet:port_number()) -> {ok, server()} | {error, term()}.
start(Kind, Port) when (Kind =:= http orelse Kind =:= echo), is_integer(Port) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Name = {?MODULE, Kind, make_ref()},
    Opts = #{ip => {127, 0, 0, 1},
             port => Port,
             context_opts => #{python_path => [examples_dir()],
                               setup_code => setup_code(Kind)}},
    case py_reactor:start_listener(Name, Opts) of
        {ok, _} ->
            {ok, #{kind => Kind, port => py_reactor:get_port(Name), listener => Name}};
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc Stops a server started with {@link start/2}: the listener stops
%% accepting, lets open connections finish, then stops its contexts.
-spec stop(server()) -> ok.
stop(#{listener := Name}) ->
    case py_reactor:stop_listener(Name) of
        ok -> ok;
        {error, not_found} -> ok
    end.

%% @doc The directory holding the examples' Python files.
-spec examples_dir() -> file:filename().
examples_dir() ->
    case os:getenv("PY_REACTOR_EXAMPLES") of
        false ->
            Source = proplists:get_value(source, ?MODULE:module_info(compile)),
            filename:dirname(Source);
        Dir ->
            Dir
    end.

%% Internal.

-spec run(kind(), inet:port_number() | [atom() | string()]) -> no_return().
run(Kind, Port0) ->
    Port = port_number(Port0),
    case start(Kind, Port) of
        {ok, #{port := ActualPort}} ->
            case Kind of
                http -> io:format("curl http://127.0.0.1:~b/~n", [ActualPort]);
                echo -> io:format("echo hello | nc 127.0.0.1 ~b~n", [ActualPort])
            end,
            receive after infinity -> ok end;
        {error, Reason} ->
            io:format(standard_error, "py_reactor_example: cannot start: ~p~n", [Reason]),
            erlang:halt(1)
    end.

port_number(Port) when is_integer(Port) -> Port;
port_number([Arg]) when is_atom(Arg) -> list_to_integer(atom_to_list(Arg));
port_number([Arg]) when is_list(Arg) -> list_to_integer(Arg).

setup_code(http) ->
    <<"import http_protocol\n">>;
setup_code(echo) ->
    <<"import echo_protocol\n">>.
