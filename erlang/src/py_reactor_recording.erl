%% @doc Reads recordings made with the `record' option of
%% {@link py_reactor_context:start_link/3}.
%%
%% The format is described in `docs/recording.md': a sequence of records,
%% each a 32-bit big-endian length and one external-format term. The frames
%% inside `in' and `out' records are decoded here as well.
-module(py_reactor_recording).

-export([read/1, parse/1]).

-export_type([record/0, recording/0]).

-type record() ::
    {in, non_neg_integer(), term() | {invalid, binary()}}
  | {in_skipped, non_neg_integer(), non_neg_integer()}
  | {out, non_neg_integer(), term()}
  | {fd, non_neg_integer(), pos_integer(), atom(), non_neg_integer()}
  | {read, non_neg_integer(), pos_integer(), binary()}
  | {write, non_neg_integer(), pos_integer(), binary()}
  | {'end', non_neg_integer(), atom()}.

-type recording() :: #{header := map(),
                       records := [record()],
                       truncated := false | non_neg_integer()}.

-define(VERSION, 1).
%% The largest record the port writes: a frame of 16 MiB plus its wrapping.
-define(MAX_RECORD, (16 * 1024 * 1024 + 1024)).

%% @doc Reads and decodes the recording at `Path'.
-spec read(file:name_all()) -> {ok, recording()} | {error, term()}.
read(Path) ->
    case file:read_file(Path) of
        {ok, Bin} -> parse(Bin);
        {error, Reason} -> {error, {file, Reason}}
    end.

%% @doc Decodes the bytes of a recording.
%%
%% An incomplete last record (the port died while writing it) is reported
%% in `truncated' with its offset; anything else malformed is an error that
%% names the offset.
-spec parse(binary()) -> {ok, recording()} | {error, term()}.
parse(<<Len:32/big, Header:Len/binary, Rest/binary>>) ->
    case decode_term(Header) of
        {ok, {py_reactor_recording, ?VERSION, Info}} when is_map(Info) ->
            records(Rest, 4 + Len, Info, []);
        {ok, {py_reactor_recording, Version, _}} when Version =/= ?VERSION ->
            {error, {unsupported_version, Version}};
        _ ->
            {error, {no_header, 0}}
    end;
parse(_) ->
    {error, {no_header, 0}}.

records(<<>>, _Offset, Header, Acc) ->
    {ok, #{header => Header, records => lists:reverse(Acc), truncated => false}};
records(<<Len:32/big, _/binary>>, Offset, _Header, _Acc) when Len > ?MAX_RECORD ->
    {error, {too_large, Offset}};
records(<<Len:32/big, Body:Len/binary, Rest/binary>>, Offset, Header, Acc) ->
    case decode_term(Body) of
        {ok, Term} ->
            case record(Term) of
                {ok, Record} -> records(Rest, Offset + 4 + Len, Header, [Record | Acc]);
                error -> {error, {bad_record, Offset}}
            end;
        error ->
            {error, {bad_term, Offset}}
    end;
records(_Incomplete, Offset, Header, Acc) ->
    {ok, #{header => Header, records => lists:reverse(Acc), truncated => Offset}}.

record({in, T, Frame}) when is_binary(Frame) ->
    case decode_term(Frame) of
        {ok, Term} -> {ok, {in, T, Term}};
        error -> {ok, {in, T, {invalid, Frame}}}
    end;
record({out, T, Frame}) when is_binary(Frame) ->
    case decode_term(Frame) of
        {ok, Term} -> {ok, {out, T, Term}};
        error -> error
    end;
record({in_skipped, _, _} = R) -> {ok, R};
record({fd, _, _, _, _} = R) -> {ok, R};
record({read, _, _, Bin} = R) when is_binary(Bin) -> {ok, R};
record({write, _, _, Bin} = R) when is_binary(Bin) -> {ok, R};
record({'end', _, _} = R) -> {ok, R};
record(_) -> error.

%% Not `[safe]': a recording names atoms (`connection_bytes', `closed', the
%% reasons and notices of the port, the atoms of the terms a session carried)
%% that need not exist yet in the VM reading it, and `safe' refuses every
%% record holding one. A term must fill its record exactly.
decode_term(Bin) ->
    try binary_to_term(Bin, [used]) of
        {Term, Used} when Used =:= byte_size(Bin) -> {ok, Term};
        {_Term, _Used} -> error
    catch
        error:badarg -> error
    end.
