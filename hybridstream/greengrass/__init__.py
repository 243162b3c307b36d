"""An offline stand-in for a Greengrass v2 core, for tests and the demo (never shipped to a device).

- :mod:`hybridstream.greengrass.recipe`: the nucleus's rules for a recipe: platform names and
  manifest selection, configuration merge, recipe-variable interpolation (with and without
  ``interpolateComponentConfiguration``);
- :mod:`hybridstream.greengrass.ipc`: a minimal Greengrass IPC server (event-stream RPC over a
  Unix socket): ``PublishToIoTCore`` / ``SubscribeToIoTCore`` with the components' authorization
  policies, so the awsiotsdk's IPC client in a component talks to it as to a nucleus;
- :mod:`hybridstream.greengrass.runner`: installs and runs components' lifecycles in a throwaway
  root (artifacts unzipped where the nucleus puts them).
"""
