/** OHIF (compose demo): one DICOMweb source, Orthanc, as the browser reaches it. */
window.config = {
  routerBasename: '/',
  showStudyList: true,
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'orthanc',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {
      friendlyName: 'Orthanc', name: 'orthanc',
      qidoRoot: 'http://localhost:8042/dicom-web', wadoRoot: 'http://localhost:8042/dicom-web',
      wadoUriRoot: 'http://localhost:8042/wado', qidoSupportsIncludeField: false,
      supportsFuzzyMatching: false, supportsWildcard: false, imageRendering: 'wadors',
      thumbnailRendering: 'wadors', enableStudyLazyLoad: true, staticWado: false,
      bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      omitQuotationForMultipartRequest: true,
    },
  }],
};
