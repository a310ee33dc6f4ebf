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
-module(py_reactor_opts).

-export([check_args/1, check_setup/1, text/2]).

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
