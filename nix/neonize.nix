# neonize (Python over the Go library whatsmeow) from PyPI's manylinux wheels.
#
# The wheel carries the Go library (neonize/neonize-linux-<arch>.so, which
# needs only libc). At import, neonize compares that library's version with
# its own and downloads a replacement from GitHub when they differ: so the
# wheel's library is kept byte for byte (no strip, no patchelf) and the check
# below proves the two versions agree, so the download path is never taken.
#
# To update: change `version`, then print the new hashes with
#   python tests/test_nix.py --print-hashes
# (it downloads the wheels with pip and converts their sha256 to SRI).
{
  lib,
  stdenv,
  buildPythonPackage,
  fetchPypi,
  python,
  httpx,
  linkpreview,
  phonenumbers,
  pillow,
  protobuf,
  python-magic,
  requests,
  segno,
  tqdm,
}:

let
  version = "0.5.2";

  # One wheel per platform: neonize-0.5.2-py310-none-<platform>.whl
  wheels = {
    x86_64-linux = {
      platform = "manylinux2014_x86_64";
      hash = "sha256-1zfvwD06TbConR76w7VRmUcutXrNoEGSfKjvx5eHK2k=";
    };
    aarch64-linux = {
      platform = "manylinux2014_aarch64";
      hash = "sha256-JY/EGnK2CFQlWBXGl+ok2xTZbWIF0Q6VJNszGGFePKM=";
    };
  };

  wheel =
    wheels.${stdenv.hostPlatform.system}
      or (throw "neonize: PyPI has no wheel for ${stdenv.hostPlatform.system}");
in
buildPythonPackage {
  pname = "neonize";
  inherit version;
  format = "wheel";

  src = fetchPypi {
    pname = "neonize";
    inherit version;
    format = "wheel";
    dist = "py310";
    python = "py310";
    abi = "none";
    inherit (wheel) platform hash;
  };

  dependencies = [
    httpx
    linkpreview
    phonenumbers
    pillow
    # At least 7.34.1 (see nix/python.nix): neonize's metadata says >=6.32.1,
    # but its generated code fails to import with the 6.x runtime.
    protobuf
    # nixpkgs' python-magic has the path of libmagic (from `file`) patched in.
    python-magic
    requests
    segno
    tqdm
  ];

  # The Go library must stay exactly as built upstream.
  dontStrip = true;

  # Offline (the build sandbox, and the proxy variables below for a build
  # without one), `import neonize` can only succeed if it never reaches its
  # download path. The explicit comparison first gives a clear message.
  doCheck = true;
  checkPhase = ''
    runHook preCheck
    export HOME="$TMPDIR" http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9
    ${python.interpreter} - <<'PYTHON'
    import ctypes
    import importlib.metadata
    import importlib.util
    import pathlib
    import re

    spec = importlib.util.find_spec("neonize")
    root = pathlib.Path(spec.origin).parent
    expected = re.search(
        r'__GONEONIZE_VERSION__ = "([^"]+)"', (root / "download.py").read_text()
    ).group(1)
    [library] = root.glob("neonize-linux-*.so")
    go = ctypes.CDLL(str(library))
    go.GetVersion.restype = ctypes.c_char_p
    bundled = go.GetVersion().decode()
    package = importlib.metadata.version("neonize")
    assert bundled == expected == package == "${version}", (bundled, expected, package)

    import neonize  # noqa: E402  (loads the library and checks it again)

    print(f"neonize {package}: bundled Go library {bundled} at {library.name}")
    PYTHON
    runHook postCheck
  '';

  pythonImportsCheck = [ "neonize.client" ];

  meta = {
    description = "Python library for WhatsApp automation on top of whatsmeow";
    homepage = "https://github.com/krypton-byte/neonize";
    license = lib.licenses.asl20;
    sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
    platforms = lib.attrNames wheels;
  };
}
