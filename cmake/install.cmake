# `cmake --install`: binaries (install(TARGETS) in daemon/ and cli/), systemd units,
# sysusers.d/tmpfiles.d snippets, the example config and the model catalog, in the
# GNUInstallDirs places. Package builds: configure with -DCMAKE_INSTALL_PREFIX=/usr (the
# config then goes to /etc) and install with DESTDIR.

# systemd looks in <prefix>/lib/systemd/... for /usr and /usr/local alike; these are not
# under CMAKE_INSTALL_LIBDIR, which is multiarch (lib/x86_64-linux-gnu) on Debian.
set(KLINGD_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "systemd system unit directory (relative to the prefix, or absolute)")
set(KLINGD_SYSTEMD_USER_UNIT_DIR "lib/systemd/user" CACHE STRING "systemd user unit directory")
set(KLINGD_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING "sysusers.d directory")
set(KLINGD_TMPFILES_DIR "lib/tmpfiles.d" CACHE STRING "tmpfiles.d directory")

install(FILES systemd/klingd.sysusers.conf DESTINATION "${KLINGD_SYSUSERS_DIR}" RENAME klingd.conf)

# The model catalog as data (models_file may point here; the same catalog is built in).
install(FILES config/models.json DESTINATION "${CMAKE_INSTALL_DATADIR}/klingd")

# The documented example config, and the operations guide, in the doc directory.
install(FILES config/klingd.jsonc DESTINATION "${CMAKE_INSTALL_DOCDIR}")
foreach(doc README.md docs/operations.md)
  if(EXISTS "${PROJECT_SOURCE_DIR}/${doc}")
    install(FILES "${doc}" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
  endif()
endforeach()

# The units, the tmpfiles.d snippet and /etc/klingd/klingd.jsonc name absolute paths, so
# they are configured at install time, from the prefix actually used: `cmake --install
# build --prefix /usr` gives units that run /usr/bin/klingd, whatever the configure-time
# prefix was (cmake/install_units.cmake).
install(CODE "
  set(KLINGD_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(KLINGD_STAGING_DIR \"${PROJECT_BINARY_DIR}/install-staging\")
  set(KLINGD_INSTALL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(KLINGD_INSTALL_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(KLINGD_INSTALL_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  set(KLINGD_SYSTEMD_UNIT_DIR \"${KLINGD_SYSTEMD_UNIT_DIR}\")
  set(KLINGD_SYSTEMD_USER_UNIT_DIR \"${KLINGD_SYSTEMD_USER_UNIT_DIR}\")
  set(KLINGD_TMPFILES_DIR \"${KLINGD_TMPFILES_DIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install_units.cmake\")
")
