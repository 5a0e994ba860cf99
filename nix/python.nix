# The Python interpreter wabscan runs on: nixpkgs' python3 with the three
# packages wabscan needs that nixpkgs lacks or has too old. It is a private
# package set (python3.override), so a system that imports the NixOS module
# keeps its own python3Packages untouched.
{
  lib,
  python3,
  fetchPypi,
}:

let
  python = python3.override {
    self = python;
    packageOverrides = pyfinal: pyprev: {
      # neonize 0.5.2's generated protobuf code needs the 7.34.1 runtime or
      # newer: with 6.x, `import neonize` fails with a gencode/runtime
      # VersionError (FIELD-NOTES). Use nixpkgs' protobuf when it is new
      # enough, else its own recipe on a newer PyPI source.
      protobuf =
        if lib.versionAtLeast pyprev.protobuf.version "7.34.1" then
          pyprev.protobuf
        else
          pyprev.protobuf.overridePythonAttrs (old: {
            version = "7.36.2";
            src = fetchPypi {
              pname = "protobuf";
              version = "7.36.2";
              hash = "sha256-SX0EY/8zFmgdpsC56NBstGXWGrzgC2E6tCImF1ZE0bs=";
            };
          });

      # Imported by neonize.client at import time; not in nixpkgs.
      linkpreview = pyfinal.buildPythonPackage rec {
        pname = "linkpreview";
        version = "0.13.2";
        pyproject = true;

        src = fetchPypi {
          inherit pname version;
          hash = "sha256-So7M5xQt4nU6MalrhASNz09eofeH7CmEEBmUzj2Rawo=";
        };

        build-system = [ pyfinal.setuptools ];
        dependencies = [
          pyfinal.beautifulsoup4
          pyfinal.requests
        ];

        # The sdist's tests fetch web pages.
        doCheck = false;
        pythonImportsCheck = [ "linkpreview" ];

        meta = {
          description = "Get link (URL) previews";
          homepage = "https://pypi.org/project/linkpreview/";
          license = lib.licenses.mit;
        };
      };

      neonize = pyfinal.callPackage ./neonize.nix { };
    };
  };
in
python
