# osctld and osctl as one Python application, with the tools they run.
#
#   pkgs.callPackage ./nix/package.nix { }
{
  lib,
  python3Packages,
  pkg-config,
  lxc,
  busybox,
  debootstrap,
  btrfs-progs,
  shadow,
  iproute2,
  util-linux,
  gnutar,
  coreutils,
  openssh,
  rsync,
}:

let
  # liblxc's Python bindings (python3-lxc), which nixpkgs does not carry.
  python-lxc = python3Packages.buildPythonPackage rec {
    pname = "lxc";
    version = "3.0.4.0";
    format = "setuptools";
    src = python3Packages.fetchPypi {
      inherit pname version;
      hash = "sha256-UzaGzBMfPQkxQyQ39hmtT37nU17ZRyNa2oNHZWL6a9A=";
    };
    nativeBuildInputs = [ pkg-config ];
    buildInputs = [ lxc ];
    # Its own tests create and start containers.
    doCheck = false;
    pythonImportsCheck = [ "lxc" ];
  };

  # What osctld runs: LXC's tools, template recipes, storage and ID-map
  # tools, ssh and rsync to send servers to other nodes.
  runtimePath = lib.makeBinPath [
    lxc
    busybox
    debootstrap
    btrfs-progs
    shadow
    iproute2
    util-linux
    gnutar
    coreutils
    openssh
    rsync
  ];
in
python3Packages.buildPythonApplication {
  pname = "osctld";
  version = "0.1.0";
  pyproject = true;

  src = lib.cleanSource ../.;

  build-system = with python3Packages; [
    setuptools
    wheel
  ];

  dependencies =
    (with python3Packages; [
      click
      msgpack
      pyyaml
      pyroute2
      prometheus-client
    ])
    ++ [ python-lxc ];

  # The unit tests need neither root nor LXC; the integration tests need both.
  nativeCheckInputs = [ python3Packages.pytestCheckHook ];
  pytestFlagsArray = [ "tests/unit" ];

  makeWrapperArgs = [
    "--prefix"
    "PATH"
    ":"
    runtimePath
  ];

  # Templates are data beside the code: the module points templates_dir here.
  postInstall = ''
    mkdir -p $out/share/osctld
    cp -r templates $out/share/osctld/templates
    patchShebangs $out/share/osctld/templates
  '';

  meta = {
    description = "Container hypervisor daemon for Linux hosting nodes, and its client";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "osctl";
  };
}
