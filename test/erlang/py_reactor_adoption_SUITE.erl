%% py_reactor as other projects use it: a dependency of a throwaway rebar3
%% application (a git dependency on a file:// URL, and a _checkouts
%% directory), a relx release of that application started with the source
%% tree out of reach, and a dependency of a mix project.
%%
%% Each case builds a real project in a temporary directory with the real
%% rebar3 (and mix), whose build hook builds the port program; the projects
%% then serve one echo connection through a context. The cargo output
%% directory is shared between the cases and kept across runs
%% (_build/adoption-cargo) so that only the port crate itself is compiled
%% again.
-module(py_reactor_adoption_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

%% Builds run the Rust compiler: minutes, not seconds, on a busy machine.
suite() ->
    [{timetrap, {minutes, 20}}].

all() ->
    [{group, rebar3}, mix_dependency, python_package_for_tooling].

%% The release is made from the project of the git dependency case.
groups() ->
    [{rebar3, [sequence], [git_dependency, release, checkouts_dependency]}].

init_per_suite(Config) ->
    Repo = repo_dir(),
    Tmp = string:trim(os:cmd("mktemp -d /tmp/py_reactor_adoption.XXXXXX")),
    true = filelib:is_dir(Tmp),
    Src = filename:join(Tmp, "py_reactor"),
    ok = snapshot(Repo, Src),
    [{repo, Repo}, {tmp, Tmp}, {src, Src},
     {cargo_target, filename:join([Repo, "_build", "adoption-cargo"])} | Config].

end_per_suite(Config) ->
    _ = os:cmd("rm -rf '" ++ ?config(tmp, Config) ++ "'"),
    ok.

init_per_group(_Group, Config) ->
    Config.

end_per_group(_Group, _Config) ->
    ok.

%% Cases.

%% `rebar3 compile' of an application depending on a git URL builds the port
%% program into the dependency's priv directory; the application serves.
git_dependency(Config) ->
    App = filename:join(?config(tmp, Config), "git_app"),
    Dep = {git, "file://" ++ ?config(src, Config), {branch, "main"}},
    ok = write_app(App, Dep),
    _ = run(App, "rebar3 compile", Config),
    Lib = filename:join([App, "_build", "default", "lib", "py_reactor"]),
    true = filelib:is_regular(filename:join([Lib, "priv", "py_reactor_port"])),
    true = filelib:is_regular(filename:join([Lib, "priv", "python", "erlang", "reactor.py"])),
    Report = serve_one(App, "erl -noshell -pa _build/default/lib/*/ebin "
                            "-eval 'application:ensure_all_started(throwaway)'", Config),
    #{priv := Priv, package := Package} = Report,
    %% The application's priv directory, as the build left it.
    same_file(filename:join(Lib, "priv"), Priv),
    in_dir(Priv, Package),
    true = filelib:is_regular(filename:join(Priv, "py_reactor_port")).

%% `rebar3 release' of the same application; the release, moved to another
%% directory and started there with the clone and the project renamed away,
%% serves with the port and the Python package of its own priv directory.
release(Config) ->
    Tmp = ?config(tmp, Config),
    App = filename:join(Tmp, "git_app"),
    _ = run(App, "rebar3 release", Config),
    Elsewhere = filename:join(Tmp, "elsewhere"),
    ok = filelib:ensure_dir(filename:join(Elsewhere, "x")),
    Rel = filename:join(Elsewhere, "throwaway"),
    _ = run(Tmp, "cp -a git_app/_build/default/rel/throwaway " ++ quote(Rel), Config),
    %% Out of reach: the snapshot the dependency came from and the project
    %% (with its _build) both renamed.
    Src = ?config(src, Config),
    ok = file:rename(Src, Src ++ ".gone"),
    ok = file:rename(App, App ++ ".gone"),
    try
        Report = serve_one(Elsewhere, "throwaway/bin/throwaway -noshell", Config),
        #{priv := Priv, package := Package} = Report,
        in_dir(Rel, Priv),
        in_dir(filename:join(Priv, "python"), Package)
    after
        ok = file:rename(Src ++ ".gone", Src),
        ok = file:rename(App ++ ".gone", App)
    end.

%% The same application with py_reactor in _checkouts (a clone of the
%% snapshot) and no deps entry fetched from anywhere.
checkouts_dependency(Config) ->
    Tmp = ?config(tmp, Config),
    App = filename:join(Tmp, "checkouts_app"),
    ok = write_app(App, {git, "file:///nonexistent/py_reactor.git", {branch, "main"}}),
    Checkout = filename:join([App, "_checkouts", "py_reactor"]),
    ok = filelib:ensure_dir(Checkout),
    _ = run(Tmp, "git clone -q " ++ quote(?config(src, Config)) ++ " " ++ quote(Checkout), Config),
    _ = run(App, "rebar3 compile", Config),
    Report = serve_one(App, "erl -noshell -pa _build/default/*/*/ebin "
                            "-eval 'application:ensure_all_started(throwaway)'", Config),
    #{priv := Priv, package := Package} = Report,
    true = filelib:is_regular(filename:join(Priv, "py_reactor_port")),
    same_file(filename:join(Checkout, "priv"), Priv),
    in_dir(Priv, Package).

%% A mix project with `{:py_reactor, path: ..., manager: :rebar3}': `mix
%% test' compiles the dependency (its hook builds the port) and an ExUnit
%% test serves one echo connection through :py_reactor_context.
mix_dependency(Config) ->
    Tmp = ?config(tmp, Config),
    App = filename:join(Tmp, "mix_app"),
    Checkout = filename:join(Tmp, "py_reactor_for_mix"),
    _ = run(Tmp, "git clone -q " ++ quote(?config(src, Config)) ++ " " ++ quote(Checkout), Config),
    ok = write_file(filename:join(App, "mix.exs"), mix_exs(Checkout)),
    ok = write_file(filename:join([App, "lib", "throwaway.ex"]),
                    "defmodule Throwaway do\nend\n"),
    ok = write_file(filename:join([App, "test", "test_helper.exs"]), "ExUnit.start()\n"),
    ok = write_file(filename:join([App, "test", "echo_test.exs"]), exunit_test()),
    Rebar3 = os:find_executable("rebar3"),
    true = is_list(Rebar3),
    Output = run(App, "mix test", [{"MIX_REBAR3", Rebar3}, {"MIX_ENV", "test"},
                                   {"MIX_HOME", filename:join(Tmp, "mix_home")},
                                   {"HEX_OFFLINE", "1"}], Config),
    case string:find(Output, "1 test, 0 failures") of
        nomatch -> ct:fail({mix_test_output, Output});
        _ -> ok
    end,
    true = filelib:is_regular(filename:join([Checkout, "priv", "py_reactor_port"])).

%% `pip install ./python' into a virtualenv (with the build's mypy visible
%% through the system site-packages) gives type checkers the `erlang'
%% package and the stubs of `_py_reactor': `mypy --strict' passes on the
%% examples, copied away from the source tree, and catches a misuse.
python_package_for_tooling(Config) ->
    Tmp = ?config(tmp, Config),
    Src = ?config(src, Config),
    Venv = filename:join(Tmp, "tooling_venv"),
    Python = quote(filename:join([Venv, "bin", "python"])),
    _ = run(Tmp, "python3 -m venv --system-site-packages " ++ quote(Venv), Config),
    _ = run(Tmp, Python ++ " -m pip install --disable-pip-version-check -q "
                 ++ quote(filename:join(Src, "python")), Config),
    Examples = filename:join(Tmp, "examples_elsewhere"),
    _ = run(Tmp, "cp -r " ++ quote(filename:join(Src, "examples")) ++ " " ++ quote(Examples),
            Config),
    Output = run(Examples, Python ++ " -m mypy --strict --no-incremental .", Config),
    case string:find(Output, "Success: no issues found") of
        nomatch -> ct:fail({mypy_output, Output});
        _ -> ok
    end,
    ok = write_file(filename:join(Tmp, "misuse/misuse.py"),
                    "import erlang.reactor as reactor\n"
                    "reactor.set_protocol_factory(42)\n"),
    case sh(Python ++ " -m mypy --strict --no-incremental misuse.py", [],
            filename:join(Tmp, "misuse"), env(Config), 300000) of
        {1, Errors} ->
            case string:find(Errors, "\"set_protocol_factory\" has incompatible type") of
                nomatch -> ct:fail({mypy_misuse_output, Errors});
                _ -> ok
            end;
        Other ->
            ct:fail({mypy_misuse_not_caught, Other})
    end.

%% The throwaway projects.

write_app(Dir, PyReactorDep) ->
    Config = io_lib:format(
               "{erl_opts, [debug_info]}.~n"
               "{deps, [{py_reactor, ~0p}]}.~n"
               "{relx, [{release, {throwaway, \"0.1.0\"}, [throwaway]},~n"
               "        {dev_mode, false}, {include_erts, false},~n"
               "        {extended_start_script, false}]}.~n", [PyReactorDep]),
    ok = write_file(filename:join(Dir, "rebar.config"), Config),
    ok = write_file(filename:join([Dir, "src", "throwaway.app.src"]),
                    "{application, throwaway,\n"
                    " [{description, \"Depends on py_reactor\"}, {vsn, \"0.1.0\"},\n"
                    "  {applications, [kernel, stdlib, py_reactor]},\n"
                    "  {mod, {throwaway_app, []}}, {env, []}, {modules, []}]}.\n"),
    write_file(filename:join([Dir, "src", "throwaway_app.erl"]), throwaway_app()).

%% When THROWAWAY_REPORT names a file, the application starts a context,
%% listens on a free port, writes what the test needs to know to that file,
%% hands off the one connection it accepts, and stops the VM once that
%% connection has closed.
throwaway_app() ->
    ["-module(throwaway_app).\n"
     "-behaviour(application).\n"
     "-behaviour(supervisor).\n"
     "-export([start/2, stop/1, init/1, serve/1]).\n"
     "start(_Type, _Args) ->\n"
     "    case os:getenv(\"THROWAWAY_REPORT\") of\n"
     "        false -> ok;\n"
     "        File -> spawn(?MODULE, serve, [File])\n"
     "    end,\n"
     "    supervisor:start_link(?MODULE, []).\n"
     "stop(_State) -> ok.\n"
     "init([]) -> {ok, {#{}, []}}.\n"
     "serve(File) ->\n"
     "    {ok, Ctx} = py_reactor_context:start_link(throwaway, worker,\n"
     "                                              #{setup_code => <<\"", echo_setup_code(), "\">>}),\n"
     "    {ok, Package} = py_reactor_context:eval(Ctx, <<\"__import__('erlang').__file__\">>),\n"
     "    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),\n"
     "    {ok, Port} = inet:port(L),\n"
     "    Report = #{port => Port, priv => filename:absname(code:priv_dir(py_reactor)),\n"
     "               package => Package},\n"
     "    ok = file:write_file(File ++ \".tmp\", io_lib:format(\"~p.~n\", [Report])),\n"
     "    ok = file:rename(File ++ \".tmp\", File),\n"
     "    {ok, S} = gen_tcp:accept(L, 120000),\n"
     "    ok = py_reactor_context:handoff_socket(Ctx, S, #{}),\n"
     "    wait_closed(Ctx),\n"
     "    init:stop().\n"
     "wait_closed(Ctx) ->\n"
     "    case py_reactor_context:stats(Ctx) of\n"
     "        #{total_connections := 1, active_connections := 0} -> ok;\n"
     "        _ -> timer:sleep(50), wait_closed(Ctx)\n"
     "    end.\n"].

echo_setup_code() ->
    "import erlang.reactor as reactor\\n"
    "class Echo(reactor.Protocol):\\n"
    "    def data_received(self, data):\\n"
    "        self.write_buffer.extend(data)\\n"
    "        return 'write_pending'\\n"
    "reactor.set_protocol_factory(Echo)\\n".

mix_exs(Checkout) ->
    io_lib:format(
      "defmodule Throwaway.MixProject do~n"
      "  use Mix.Project~n"
      "  def project do~n"
      "    [app: :throwaway, version: \"0.1.0\", elixir: \"~~> 1.14\",~n"
      "     deps: [{:py_reactor, path: ~0p, manager: :rebar3}]]~n"
      "  end~n"
      "  def application, do: [extra_applications: [:logger]]~n"
      "end~n", [Checkout]).

exunit_test() ->
    ["defmodule EchoTest do\n"
     "  use ExUnit.Case\n"
     "  test \"a context serves one echo connection\" do\n"
     "    {:ok, _} = Application.ensure_all_started(:py_reactor)\n"
     "    {:ok, ctx} = :py_reactor_context.start_link(1, :worker, %{setup_code: \"",
     echo_setup_code(), "\"})\n"
     "    {:ok, listen} = :gen_tcp.listen(0, [:binary, active: false, ip: {127, 0, 0, 1}])\n"
     "    {:ok, port} = :inet.port(listen)\n"
     "    {:ok, client} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false])\n"
     "    {:ok, server} = :gen_tcp.accept(listen, 5000)\n"
     "    :ok = :py_reactor_context.handoff_socket(ctx, server, %{})\n"
     "    :ok = :gen_tcp.send(client, \"hello from mix\")\n"
     "    assert {:ok, \"hello from mix\"} = :gen_tcp.recv(client, 14, 10000)\n"
     "    :ok = :py_reactor_context.stop(ctx)\n"
     "  end\n"
     "end\n"].

%% Starts `Command' in `Dir', waits for the report of the throwaway
%% application, echoes through the connection it hands off, and waits for
%% the VM to stop by itself. Returns the report.
serve_one(Dir, Command, Config) ->
    ReportFile = filename:join(?config(tmp, Config), "report"),
    _ = file:delete(ReportFile),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", Command]}, {cd, Dir}, exit_status, stderr_to_stdout,
                      binary, hide, {env, [{"THROWAWAY_REPORT", ReportFile} | env(Config)]}]),
    Report = await_report(Port, ReportFile, <<>>, 240000),
    #{port := TcpPort} = Report,
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, TcpPort, [binary, {active, false}], 5000),
    ok = py_reactor_test_lib:echo(Sock, <<"one echo through a dependency">>),
    ok = gen_tcp:close(Sock),
    case collect(Port, <<>>, 60000) of
        {0, _} -> Report;
        {Status, Output} -> ct:fail({vm_exit, Status, Output})
    end.

await_report(_Port, _File, Output, Left) when Left =< 0 ->
    ct:fail({no_report, Output});
await_report(Port, File, Output, Left) ->
    case file:consult(File) of
        {ok, [Report]} ->
            Report;
        {error, _} ->
            receive
                {Port, {data, Data}} ->
                    await_report(Port, File, <<Output/binary, Data/binary>>, Left);
                {Port, {exit_status, Status}} ->
                    ct:fail({exited_before_serving, Status, Output})
            after 100 ->
                await_report(Port, File, Output, Left - 100)
            end
    end.

%% Helpers.

%% The checkout this suite belongs to: rebar3 compiles the suite from a copy
%% under _build, so walk up to the directory holding Cargo.toml.
repo_dir() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    repo_dir(filename:dirname(Source)).

repo_dir("/") ->
    ct:fail(no_checkout_above_suite);
repo_dir(Dir) ->
    case filelib:is_regular(filename:join(Dir, "Cargo.toml"))
        andalso filelib:is_regular(filename:join(Dir, "rebar.config")) of
        true -> Dir;
        false -> repo_dir(filename:dirname(Dir))
    end.

%% A git repository at Dest holding the working tree of Repo as it is now
%% (committed or not, ignored files left out), on branch main.
snapshot(Repo, Dest) ->
    ok = filelib:ensure_dir(filename:join(Dest, "x")),
    Script = "git -C \"$1\" ls-files -z --cached --others --exclude-standard"
             " | (cd \"$1\" && xargs -0 sh -c 'for f; do [ -e \"$f\" ] && printf \"%s\\0\" \"$f\"; done' sh)"
             " | tar -C \"$1\" --null -T - -cf - | tar -C \"$2\" -xf - &&"
             " cd \"$2\" && git init -q -b main && git add -A &&"
             " git -c user.name=test -c user.email=test@localhost commit -qm snapshot",
    {0, _} = sh(Script, [Repo, Dest], Repo, [], 300000),
    ok.

env(Config) ->
    [{"CARGO_TARGET_DIR", ?config(cargo_target, Config)},
     {"ERL_LIBS", false}, {"ERL_FLAGS", false}, {"ERL_AFLAGS", false},
     {"ERL_ZFLAGS", false}, {"REBAR_CONFIG", false}, {"REBAR_PROFILE", false}].

run(Dir, Command, Config) ->
    run(Dir, Command, [], Config).

run(Dir, Command, Env, Config) ->
    case sh(Command, [], Dir, Env ++ env(Config), 900000) of
        {0, Output} -> unicode:characters_to_list(Output);
        {Status, Output} -> ct:fail({command_failed, Command, Status, Output})
    end.

sh(Command, Args, Dir, Env, Timeout) ->
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", Command, "sh" | Args]}, {cd, Dir}, {env, Env},
                      exit_status, stderr_to_stdout, binary, hide]),
    collect(Port, <<>>, Timeout).

collect(Port, Acc, Timeout) ->
    receive
        {Port, {data, Data}} -> collect(Port, <<Acc/binary, Data/binary>>, Timeout);
        {Port, {exit_status, Status}} -> {Status, Acc}
    after Timeout ->
        ct:fail({command_timeout, Acc})
    end.

write_file(Path, Content) ->
    ok = filelib:ensure_dir(Path),
    file:write_file(Path, Content).

quote(Path) ->
    "'" ++ Path ++ "'".

same_file(A, B) ->
    case {real(A), real(B)} of
        {Same, Same} -> ok;
        Other -> ct:fail({not_the_same_directory, Other})
    end.

%% Path (a file or a directory) lies inside Dir, symbolic links resolved.
in_dir(Dir, Path) ->
    RealDir = real(Dir),
    RealPath = real(unicode:characters_to_list(Path)),
    case lists:prefix(RealDir ++ "/", RealPath) of
        true -> ok;
        false -> ct:fail({not_inside, RealPath, RealDir})
    end.

real(Path) ->
    string:trim(os:cmd("realpath -e '" ++ Path ++ "'")).
