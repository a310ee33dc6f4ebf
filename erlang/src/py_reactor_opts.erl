%% @doc Checks of the arguments of the public API, so that a mistake comes
%% back as `{error, Reason}' naming it rather than as a `function_clause' or
%% `badarg' crash in the caller, or as a puzzling failure later.
%%
%% Reasons:
%% <dl>
%% <dt>`{bad_argument, {Name, Value}}'</dt>
%% <dd>An argument of the wrong shape: `Name' is `ctx', `fd',
%%     `client_info', `socket', `opts', `code', `expr', `module',
%%     `function', `args', `timeout' or `child_args'.</dd>
%% <dt>`{bad_python_path, Dir, Posix}'</dt>
%% <dd>A `python_path' entry that is not a directory that can be read
%%     (`enoent', `enotdir', `eacces').</dd>
%% <dt>`{app_callable_without_app_module, Callable}'</dt>
%% <dd>`app_callable' names an attribute of `app_module', which is not
%%     given.</dd>
%% </dl>
%%
%% The options of a context ({@link py_reactor_context:start_link/3}) are
%% checked here too, by {@link check_context/2}: each option's shape, the
%% defaults, then the options together ({@link check_setup/1}). The options
%% themselves are documented with {@link py_reactor_context}.
-module(py_reactor_opts).

-export([check_args/1, check_setup/1, text/2]).
-export([check_context/2]).

-include_lib("kernel/include/file.hrl").

-type arg() :: {ctx | fd | client_info | socket | opts | code | expr | module | function
                | args | timeout | child_args, term()}.

%% @doc Checks each `{Name, Value}' in order; the first that is wrong gives
%% `{error, {bad_argument, {Name, Value}}}'.
-spec check_args([arg()]) -> ok | {error, {bad_argument, arg()}}.
check_args([]) ->
    ok;
check_args([{Name, Value} = Arg | Rest]) ->
    case valid(Name, Value) of
        true -> check_args(Rest);
        false -> {error, {bad_argument, Arg}}
    end.

valid(ctx, Ctx) -> is_pid(Ctx) orelse (is_atom(Ctx) andalso Ctx =/= undefined);
valid(fd, Fd) -> is_integer(Fd) andalso Fd >= 0;
valid(client_info, Info) -> is_map(Info);
valid(socket, {'$socket', _}) -> true;
valid(socket, Socket) -> is_port(Socket) orelse is_record_socket(Socket);
valid(opts, Opts) -> is_map(Opts);
valid(args, Args) -> is_list(Args) andalso is_proper(Args);
valid(timeout, infinity) -> true;
valid(timeout, T) -> is_integer(T) andalso T >= 0;
valid(child_args, #{id := _}) -> true;
valid(child_args, _) -> false;
valid(Name, Text) when Name =:= code; Name =:= expr; Name =:= module; Name =:= function ->
    case text(Name, Text) of
        {ok, _} -> true;
        {error, _} -> false
    end.

%% gen_tcp sockets of the `socket' backend are tuples holding a pid.
is_record_socket(Socket) ->
    is_tuple(Socket) andalso tuple_size(Socket) >= 2 andalso element(1, Socket) =:= '$inet'.

is_proper([]) -> true;
is_proper([_ | T]) -> is_proper(T);
is_proper(_) -> false.

%% @doc `Value' (an atom or `unicode:chardata()') as a UTF-8 binary, or
%% `{error, {bad_argument, {Name, Value}}}'.
-spec text(atom(), term()) -> {ok, binary()} | {error, {bad_argument, {atom(), term()}}}.
text(_Name, Atom) when is_atom(Atom) ->
    {ok, atom_to_binary(Atom)};
text(Name, Data) ->
    try unicode:characters_to_binary(Data) of
        Bin when is_binary(Bin) -> {ok, Bin};
        _ -> {error, {bad_argument, {Name, Data}}}
    catch
        error:_ -> {error, {bad_argument, {Name, Data}}}
    end.

%% @doc Checks that the Python setup options (already of the right shapes)
%% make sense together: every `python_path' entry is a readable directory,
%% and `app_callable' comes with `app_module'.
-spec check_setup(map()) -> ok | {error, term()}.
check_setup(Opts) ->
    case check_python_path(maps:get(python_path, Opts, [])) of
        ok ->
            case Opts of
                #{app_callable := Callable} when not is_map_key(app_module, Opts) ->
                    {error, {app_callable_without_app_module, Callable}};
                _ ->
                    ok
            end;
        {error, Reason} ->
            {error, Reason}
    end.

check_python_path([]) ->
    ok;
check_python_path([Dir | Rest]) ->
    case file:read_file_info(Dir) of
        {ok, #file_info{type = directory, access = Access}}
                when Access =:= read; Access =:= read_write ->
            check_python_path(Rest);
        {ok, #file_info{type = directory}} ->
            {error, {bad_python_path, Dir, eacces}};
        {ok, _NotADirectory} ->
            {error, {bad_python_path, Dir, enotdir}};
        {error, Posix} ->
            {error, {bad_python_path, Dir, Posix}}
    end.

%% @doc Checks the mode and the options of a context, as
%% {@link py_reactor_context:start_link/3} takes them, and fills in the
%% defaults. The options come back in the form the context uses (texts as
%% UTF-8 binaries, paths made absolute, the `python' executable found on
%% `PATH').
%%
%% Errors: `{bad_mode, Mode}', `{bad_argument, {opts, Opts}}' (not a map),
%% `{unknown_option, Key}', `{bad_option, {Key, Value}}', and those of
%% {@link check_setup/1}.
-spec check_context(term(), term()) -> {ok, py_reactor_context:opts()} | {error, term()}.
check_context(Mode, Opts) ->
    case is_mode(Mode) of
        false ->
            {error, {bad_mode, Mode}};
        true when not is_map(Opts) ->
            {error, {bad_argument, {opts, Opts}}};
        true ->
            case check_opts(Opts) of
                {ok, Opts1} ->
                    case check_setup(Opts1) of
                        ok -> {ok, Opts1};
                        {error, Reason} -> {error, Reason}
                    end;
                {error, Reason} ->
                    {error, Reason}
            end
    end.

is_mode(worker) -> true;
is_mode(subinterp) -> true;
is_mode(owngil) -> true;
is_mode(_) -> false.

check_opts(Opts) ->
    Defaults = #{max_connections => 100,
                 python_path => [],
                 default => false,
                 start_timeout => 30000,
                 stop_timeout => 5000,
                 env => [],
                 record_bytes => false},
    case check_opts(maps:to_list(Opts), Defaults) of
        {ok, #{record_bytes := true} = Opts1} when not is_map_key(record, Opts1) ->
            {error, {bad_option, {record_bytes, true}}};
        Result ->
            Result
    end.

check_opts([], Acc) ->
    {ok, Acc};
check_opts([{Key, Value} | Rest], Acc) ->
    case check_opt(Key, Value) of
        {ok, Value1} -> check_opts(Rest, Acc#{Key => Value1});
        error -> {error, {bad_option, {Key, Value}}};
        unknown -> {error, {unknown_option, Key}}
    end.

check_opt(max_connections, N) when is_integer(N), N > 0 -> {ok, N};
check_opt(setup_code, Code) -> chardata_opt(Code);
check_opt(app_module, Name) when is_atom(Name) -> {ok, atom_to_binary(Name)};
check_opt(app_module, Name) -> chardata_opt(Name);
check_opt(app_callable, Name) when is_atom(Name) -> {ok, atom_to_binary(Name)};
check_opt(app_callable, Name) -> chardata_opt(Name);
check_opt(app_interface, I) when I =:= auto; I =:= wsgi; I =:= asgi; I =:= protocol ->
    {ok, I};
check_opt(access_log, Bool) when is_boolean(Bool) -> {ok, Bool};
check_opt(multiprocess, Bool) when is_boolean(Bool) -> {ok, Bool};
check_opt(lifespan, L) when L =:= auto; L =:= on; L =:= off -> {ok, L};
check_opt(Key, N) when (Key =:= max_request_line orelse Key =:= max_header_block orelse
                        Key =:= max_header_count orelse Key =:= max_body_size orelse
                        Key =:= keepalive_timeout orelse Key =:= header_timeout orelse
                        Key =:= threads), is_integer(N), N > 0 ->
    {ok, N};
check_opt(python_path, Dirs) when is_list(Dirs) ->
    try
        {ok, [unicode:characters_to_binary(filename:absname(Dir)) || Dir <- Dirs]}
    catch
        error:_ -> error
    end;
check_opt(idle_timeout, T) when T =:= infinity; is_integer(T), T > 0, T < 1 bsl 64 -> {ok, T};
check_opt(name, Name) when is_atom(Name), Name =/= undefined -> {ok, Name};
check_opt(default, Bool) when is_boolean(Bool) -> {ok, Bool};
check_opt(start_timeout, T) when T =:= infinity; is_integer(T), T >= 0 -> {ok, T};
check_opt(stop_timeout, T) when T =:= infinity; is_integer(T), T >= 0 -> {ok, T};
check_opt(port_executable, Path) when is_list(Path); is_binary(Path) ->
    try {ok, filename:absname(Path)} catch error:_ -> error end;
check_opt(record, Path) when is_list(Path); is_binary(Path) ->
    try {ok, filename:absname(Path)} catch error:_ -> error end;
check_opt(record_bytes, Bool) when is_boolean(Bool) -> {ok, Bool};
check_opt(listener, Slot) when element(1, Slot) =:= py_reactor_slot -> {ok, Slot};
check_opt(python, Path) when is_list(Path); is_binary(Path) -> python_opt(Path);
check_opt(env, Env) when is_list(Env) ->
    case lists:all(fun({K, V}) -> io_lib:printable_list(K)
                                      andalso (V =:= false orelse io_lib:printable_list(V));
                      (_) -> false
                   end, Env) of
        true -> {ok, Env};
        false -> error
    end;
check_opt(Key, _Value) when Key =:= max_connections; Key =:= name;
                            Key =:= default; Key =:= start_timeout;
                            Key =:= stop_timeout; Key =:= python_path;
                            Key =:= port_executable; Key =:= env;
                            Key =:= record; Key =:= record_bytes;
                            Key =:= app_interface; Key =:= access_log;
                            Key =:= max_request_line; Key =:= max_header_block;
                            Key =:= max_header_count; Key =:= max_body_size;
                            Key =:= keepalive_timeout; Key =:= header_timeout;
                            Key =:= threads; Key =:= idle_timeout;
                            Key =:= python; Key =:= multiprocess;
                            Key =:= lifespan ->
    error;
check_opt(_Key, _Value) ->
    unknown.

chardata_opt(Data) ->
    try unicode:characters_to_binary(Data) of
        Bin when is_binary(Bin) -> {ok, Bin};
        _Incomplete -> error
    catch
        error:badarg -> error
    end.

%% A path is made absolute but not resolved: a virtualenv's bin/python is a
%% symbolic link, and its own location is what names the environment.
python_opt(Path) ->
    try filename:flatten(Path) of
        Flat ->
            case lists:member($/, unicode:characters_to_list(Flat)) of
                true -> {ok, filename:absname(Flat)};
                false ->
                    case os:find_executable(unicode:characters_to_list(Flat)) of
                        false -> error;
                        Found -> {ok, Found}
                    end
            end
    catch
        error:_ -> error
    end.
