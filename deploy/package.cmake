# package.cmake (included by CMakeLists.txt): where `cmake --install` puts iotgw and the Debian
# package `cpack -G DEB` builds from the same rules (docs/INSTALL.md):
#   /usr/bin/iotgw, /etc/iotgw/{gateway.json,devices.json,products/} (conffiles),
#   /usr/share/iotgw/web (the console), /usr/share/iotgw/examples (config/ as in the repository),
#   /usr/share/iotgw/make-example-certs.sh (postinst: a throwaway certificate in /etc/iotgw/tls for
#   the shipped 8883 listener when none is there),
#   /usr/share/doc/iotgw (README, docs), /lib/systemd/system/iotgw.service; the database in
#   /var/lib/iotgw (made by postinst and the unit's StateDirectory).
# The installed gateway.json is config/gateway.json with storage.path and admin.web_root made
# absolute, generated here; the installed devices.json is empty (the repository's example devices
# have published secrets: they are under examples/).
include(GNUInstallDirs) # a /usr prefix gives /etc and /var for SYSCONFDIR and LOCALSTATEDIR

file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/gateway/util/version.h _gw_v REGEX "#define GW_VERSION ")
string(REGEX REPLACE ".*\"(.*)\".*" "\\1" GW_VERSION_STRING "${_gw_v}")

set(GW_SYSTEMD_UNIT_DIR /lib/systemd/system CACHE PATH "Where the systemd unit is installed")
set(GW_ETC_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/iotgw)
set(GW_SHARE_DIR ${CMAKE_INSTALL_FULL_DATADIR}/iotgw)
set(GW_STATE_DIR ${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/lib/iotgw)
set(_gen ${CMAKE_CURRENT_BINARY_DIR}/gen/install)

# The installed gateway.json: the repository's, text kept as it is (comments of layout, key
# order), two values replaced; then read back so a changed config/gateway.json cannot slip by.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${CMAKE_CURRENT_SOURCE_DIR}/config/gateway.json)
file(READ ${CMAKE_CURRENT_SOURCE_DIR}/config/gateway.json _gw_json)
string(REGEX REPLACE "(\"storage\": *{ *\"path\": *)\"[^\"]*\"" "\\1\"${GW_STATE_DIR}/iotgw.db\""
                     _gw_json "${_gw_json}")
string(REGEX REPLACE "(\"admin\": *{)" "\\1 \"web_root\": \"${GW_SHARE_DIR}/web\","
                     _gw_json "${_gw_json}")
string(JSON _p ERROR_VARIABLE _e GET "${_gw_json}" storage path)
string(JSON _w ERROR_VARIABLE _e2 GET "${_gw_json}" admin web_root)
if(NOT _p STREQUAL "${GW_STATE_DIR}/iotgw.db" OR NOT _w STREQUAL "${GW_SHARE_DIR}/web")
  message(FATAL_ERROR "deploy/package.cmake: cannot make the installed gateway.json from "
                      "config/gateway.json (storage.path: ${_p} ${_e}; admin.web_root: ${_w} ${_e2})")
endif()
file(WRITE ${_gen}/gateway.json.new "${_gw_json}")
configure_file(${_gen}/gateway.json.new ${_gen}/gateway.json COPYONLY)
file(WRITE ${_gen}/devices.json.new "[]\n")
configure_file(${_gen}/devices.json.new ${_gen}/devices.json COPYONLY)

install(FILES ${_gen}/gateway.json ${_gen}/devices.json DESTINATION ${GW_ETC_DIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
file(GLOB _gw_products CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/config/products/*.json)
install(FILES ${_gw_products} DESTINATION ${GW_ETC_DIR}/products)
install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/web/ DESTINATION ${GW_SHARE_DIR}/web)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/config/gateway.json
              ${CMAKE_CURRENT_SOURCE_DIR}/config/devices.json DESTINATION ${GW_SHARE_DIR}/examples)
install(FILES ${_gw_products} DESTINATION ${GW_SHARE_DIR}/examples/products)
file(GLOB _gw_docs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/README.md ${_gw_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/deploy/iotgw.service DESTINATION ${GW_SYSTEMD_UNIT_DIR})
# postinst makes the shipped MQTT-over-TLS listener's throwaway certificate in /etc/iotgw/tls with it
install(PROGRAMS ${CMAKE_CURRENT_SOURCE_DIR}/deploy/make-example-certs.sh DESTINATION ${GW_SHARE_DIR})

# dpkg's conffiles: every file under /etc/iotgw (an upgrade keeps the operator's edits).
set(_conf "${GW_ETC_DIR}/gateway.json\n${GW_ETC_DIR}/devices.json\n")
foreach(_f ${_gw_products})
  get_filename_component(_n ${_f} NAME)
  string(APPEND _conf "${GW_ETC_DIR}/products/${_n}\n")
endforeach()
file(WRITE ${_gen}/conffiles.new "${_conf}")
configure_file(${_gen}/conffiles.new ${_gen}/conffiles COPYONLY)
foreach(_s postinst prerm postrm)
  configure_file(${CMAKE_CURRENT_SOURCE_DIR}/deploy/debian/${_s} ${_gen}/${_s} COPYONLY)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME iotgw)
set(CPACK_PACKAGE_VERSION ${GW_VERSION_STRING})
set(CPACK_PACKAGE_VENDOR iotgw)
set(CPACK_PACKAGE_CONTACT "iotgw maintainers <iotgw@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "multi-protocol IoT device gateway (MQTT, TCP, UDP, CoAP)")
# CPack puts the summary first and indents each line of this one
string(CONCAT CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "iotgw authenticates field devices against their product, decodes and validates what\n"
    "they send against the product's thing model, commits it to SQLite before acknowledging,\n"
    "and forwards it to an MQTT broker. Runs as the systemd service iotgw.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # iotgw_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # dpkg-shlibdeps: the libraries the binary really links
# postinst: adduser, and openssl for the 8883 listener's throwaway certificate; appended to the
# shlibdeps list
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, openssl")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${_gen}/conffiles ${_gen}/postinst ${_gen}/prerm
                                       ${_gen}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES TRUE)
include(CPack)
