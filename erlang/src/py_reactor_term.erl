%% @doc The bounds the port program puts on every term it decodes, checked
%% before a term is sent, so that a request the port would refuse fails at
%% once with a reason instead of reaching the port.
%%
%% The port (`src/terms.rs') refuses a frame whose term nests compound
%% terms (non-empty tuples, lists and maps) more than 256 levels deep,
%% counting the frame's own tuple as the first level, or that holds more
%% than 1,048,576 terms (every element, map key and value, and list tail
%% counts). Both are counted here on the term as `term_to_binary/1' encodes
%% it: a list of up to 65,535 integers from 0 to 255 is a string, one term
%% with nothing nested.
-module(py_reactor_term).

-export([check/1, max_depth/0, max_terms/0]).
-export([convertible/1]).

-export_type([why/0]).

-define(MAX_DEPTH, 256).
-define(MAX_TERMS, 1048576).
-define(MAX_STRING, 65535).

-type why() :: {too_deep, MaxDepth :: pos_integer()}
             | {too_many_terms, MaxTerms :: pos_integer()}.
%% Why the port would refuse a term.

%% @doc Deepest nesting of compound terms the port accepts in one frame.
-spec max_depth() -> pos_integer().
max_depth() -> ?MAX_DEPTH.

%% @doc Most terms the port accepts in one frame.
-spec max_terms() -> pos_integer().
max_terms() -> ?MAX_TERMS.

%% @doc Checks a whole frame's term (for instance `{call, Ref, M, F, Args}')
%% against the port's bounds. Stops at the first bound passed, so a huge
%% term costs no more than the part of it that is looked at.
-spec check(term()) -> ok | {error, why()}.
check(Term) ->
    try walk([Term], 1, 0) of
        _Count -> ok
    catch
        throw:{bad_term, Why} -> {error, Why}
    end.

%% Walks the terms of one nesting level (`Level', the frame's tuple being
%% level 1); returns the running count of terms.
walk([], _Level, Count) ->
    Count;
walk([T | Rest], Level, Count0) ->
    Count = Count0 + 1,
    Count > ?MAX_TERMS andalso throw({bad_term, {too_many_terms, ?MAX_TERMS}}),
    walk(Rest, Level, children(T, Level, Count)).

%% Counts what `T' nests, at `Level'.
children(T, Level, Count) when is_tuple(T), tuple_size(T) > 0 ->
    nested(tuple_to_list(T), Level, Count);
children(T, Level, Count) when is_map(T), map_size(T) > 0 ->
    nested(maps:fold(fun(K, V, Acc) -> [K, V | Acc] end, [], T), Level, Count);
children([_ | _] = T, Level, Count) ->
    case is_string(T, 0) of
        true -> Count;
        false -> nested(list_parts(T, []), Level, Count)
    end;
children(_Leaf, _Level, Count) ->
    Count.

nested(Children, Level, Count) ->
    Level > ?MAX_DEPTH andalso throw({bad_term, {too_deep, ?MAX_DEPTH}}),
    walk(Children, Level + 1, Count).

%% The elements of a list and its tail (`[]' for a proper list), each a
%% term of the next level.
list_parts([H | T], Acc) -> list_parts(T, [H | Acc]);
list_parts(Tail, Acc) -> lists:reverse([Tail | Acc]).

is_string([], _N) -> true;
is_string([H | T], N) when is_integer(H), H >= 0, H =< 255, N < ?MAX_STRING ->
    is_string(T, N + 1);
is_string(_, _N) -> false.

%% @doc Whether `Term' has a Python form (`docs/protocol.md', "Terms and
%% Python values"): numbers, atoms, pids, binaries, and tuples, proper
%% lists and maps of such terms. References, funs, ports and bit strings
%% have none.
-spec convertible(term()) -> boolean().
convertible(T) when is_integer(T); is_float(T); is_atom(T); is_pid(T) -> true;
convertible(T) when is_binary(T) -> true;
convertible(T) when is_bitstring(T) -> false;
convertible(T) when is_tuple(T) -> convertible_list(tuple_to_list(T));
convertible(T) when is_map(T) ->
    maps:fold(fun(K, V, Acc) -> Acc andalso convertible(K) andalso convertible(V) end,
              true, T);
convertible(T) when is_list(T) -> convertible_list(T);
convertible(_) -> false.

convertible_list([]) -> true;
convertible_list([H | T]) -> convertible(H) andalso convertible_list(T);
convertible_list(_Improper) -> false.
